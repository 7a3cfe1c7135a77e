package main

import (
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// -plot draws columns of a CSV file (as written by -csv) as a line chart
// PNG with axes, ticks, labels and a legend, using the standard library
// only: no chart package, no font files, so the suite that produces the
// numbers also produces the pictures on any machine with Go.

const plotUsage = `usage: herald-load -plot IN.csv -o OUT.png [flags]

Draws one line per -y column against the -x column. Rows whose value is
empty or not a number are left out of that line. Both axes start at zero
unless a value is negative.

  herald-load -plot memory.csv -x conns -y kb_per_conn,baseline_kb_per_conn \
      -names Herald,baseline -ylabel "KB per connection" -o memory.png

flags:
`

// chart is what -plot draws.
type chart struct {
	title, xlabel, ylabel string
	series                []series
	width, height         int
}

type series struct {
	name string
	pts  []point // sorted by x
}

type point struct{ x, y float64 }

func runPlot(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("herald-load -plot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), plotUsage)
		fs.PrintDefaults()
	}
	out := fs.String("o", "", "PNG file to write (required)")
	xcol := fs.String("x", "", "column of the x axis (default: the first)")
	ycols := fs.String("y", "", "columns to draw, comma-separated (default: every other column)")
	names := fs.String("names", "", "legend names of the -y columns, comma-separated (default: the column names)")
	title := fs.String("title", "", "chart title (default: the file name)")
	xlabel := fs.String("xlabel", "", "x axis label (default: the -x column)")
	ylabel := fs.String("ylabel", "", "y axis label (default: the -y column when there is one)")
	width := fs.Int("width", 900, "image width in pixels")
	height := fs.Int("height", 560, "image height in pixels")
	// The input file may come before or between the flags.
	var inputs []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil
			}
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		inputs = append(inputs, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	switch {
	case len(inputs) != 1:
		return errors.New("-plot: want exactly one CSV file (herald-load -plot IN.csv -o OUT.png)")
	case *out == "":
		return errors.New("-plot: -o OUT.png is required")
	case *width < 200 || *height < 150 || *width > 10000 || *height > 10000:
		return errors.New("-plot: -width and -height must be between 200×150 and 10000×10000")
	}

	header, rows, err := readCSV(inputs[0])
	if err != nil {
		return err
	}
	col := func(name string) (int, error) {
		i := slices.Index(header, name)
		if i < 0 {
			return 0, fmt.Errorf("-plot: %s has no column %q (it has %s)", inputs[0], name, strings.Join(header, ", "))
		}
		return i, nil
	}
	xi := 0
	if *xcol != "" {
		if xi, err = col(*xcol); err != nil {
			return err
		}
	}
	var yis []int
	if *ycols == "" {
		for i := range header {
			if i != xi {
				yis = append(yis, i)
			}
		}
	} else {
		for name := range strings.SplitSeq(*ycols, ",") {
			i, err := col(strings.TrimSpace(name))
			if err != nil {
				return err
			}
			yis = append(yis, i)
		}
	}
	legend := make([]string, len(yis))
	for k, i := range yis {
		legend[k] = header[i]
	}
	if *names != "" {
		given := strings.Split(*names, ",")
		if len(given) != len(yis) {
			return fmt.Errorf("-plot: %d -names for %d -y columns", len(given), len(yis))
		}
		for k := range given {
			legend[k] = strings.TrimSpace(given[k])
		}
	}

	c := chart{title: *title, xlabel: *xlabel, ylabel: *ylabel, width: *width, height: *height}
	if c.title == "" {
		c.title = strings.TrimSuffix(filepath.Base(inputs[0]), filepath.Ext(inputs[0]))
	}
	if c.xlabel == "" {
		c.xlabel = header[xi]
	}
	if c.ylabel == "" && len(yis) == 1 {
		c.ylabel = header[yis[0]]
	}
	for k, yi := range yis {
		s := series{name: legend[k]}
		for _, r := range rows {
			x, errX := strconv.ParseFloat(strings.TrimSpace(r[xi]), 64)
			y, errY := strconv.ParseFloat(strings.TrimSpace(r[yi]), 64)
			if errX == nil && errY == nil && !math.IsInf(x, 0) && !math.IsInf(y, 0) && !math.IsNaN(x) && !math.IsNaN(y) {
				s.pts = append(s.pts, point{x, y})
			}
		}
		slices.SortStableFunc(s.pts, func(a, b point) int { return compareFloat(a.x, b.x) })
		c.series = append(c.series, s)
	}
	if slices.IndexFunc(c.series, func(s series) bool { return len(s.pts) > 0 }) < 0 {
		return fmt.Errorf("-plot: no numeric values to draw in %s", inputs[0])
	}

	f, err := os.Create(*out)
	if err != nil {
		return fmt.Errorf("-plot: %w", err)
	}
	if err := png.Encode(f, c.render()); err != nil {
		f.Close()
		return fmt.Errorf("-plot: encode %s: %w", *out, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("-plot: %w", err)
	}
	return nil
}

func compareFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// readCSV reads a header and rows with as many fields.
func readCSV(path string) (header []string, rows [][]string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("-plot: %w", err)
	}
	defer f.Close()
	all, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, nil, fmt.Errorf("-plot: %s: %w", path, err)
	}
	if len(all) < 2 {
		return nil, nil, fmt.Errorf("-plot: %s has no rows below its header", path)
	}
	return all[0], all[1:], nil
}

// Colors of the chart; series colors are distinguishable in print and for
// the common forms of color blindness (the Okabe–Ito palette).
func seriesColor(i int) color.RGBA {
	palette := [...]color.RGBA{
		{0x00, 0x72, 0xB2, 0xFF}, // blue
		{0xD5, 0x5E, 0x00, 0xFF}, // vermillion
		{0x00, 0x9E, 0x73, 0xFF}, // green
		{0xCC, 0x79, 0xA7, 0xFF}, // purple
		{0xE6, 0x9F, 0x00, 0xFF}, // orange
		{0x56, 0xB4, 0xE9, 0xFF}, // sky blue
	}
	return palette[i%len(palette)]
}

// render draws the chart. All text is the 5×7 font at scale 2 (10×14
// pixels a character), which is what the margins are measured in.
func (c *chart) render() *image.RGBA {
	const (
		scale   = 2
		textH   = glyphH * scale
		pad     = 12
		tickLen = 6
	)
	var (
		white = color.RGBA{0xFF, 0xFF, 0xFF, 0xFF}
		black = color.RGBA{0x20, 0x20, 0x20, 0xFF}
		grey  = color.RGBA{0x70, 0x70, 0x70, 0xFF}
		grid  = color.RGBA{0xE4, 0xE4, 0xE4, 0xFF}
	)
	img := image.NewRGBA(image.Rect(0, 0, c.width, c.height))
	draw.Draw(img, img.Bounds(), &image.Uniform{white}, image.Point{}, draw.Src)

	// Data range, from zero unless something is negative: a chart of
	// memory or latency that does not start at zero exaggerates.
	xmin, xmax, ymin, ymax := 0.0, 0.0, 0.0, 0.0
	for _, s := range c.series {
		for _, p := range s.pts {
			xmin, xmax = min(xmin, p.x), max(xmax, p.x)
			ymin, ymax = min(ymin, p.y), max(ymax, p.y)
		}
	}
	xt := niceTicks(xmin, xmax)
	yt := niceTicks(ymin, ymax)

	// Margins: room for the y tick labels and the rotated y label on the
	// left, the x tick labels and x label below, the title above.
	yLabelW := 0
	for _, v := range yt.values {
		yLabelW = max(yLabelW, textWidth(yt.format(v), scale))
	}
	left := pad + textH + pad + yLabelW + tickLen + 4
	right := pad + textWidth(xt.format(xt.values[len(xt.values)-1]), scale)/2 + 4
	top := pad + textH + 2*pad
	bottom := tickLen + 4 + textH + pad + textH + pad
	plot := image.Rect(left, top, c.width-right, c.height-bottom)
	if plot.Dx() < 50 || plot.Dy() < 50 {
		plot = image.Rect(left, top, max(left+50, c.width-right), max(top+50, c.height-bottom))
	}
	px := func(x float64) int {
		return plot.Min.X + int(math.Round((x-xt.lo)/(xt.hi-xt.lo)*float64(plot.Dx())))
	}
	py := func(y float64) int {
		return plot.Max.Y - int(math.Round((y-yt.lo)/(yt.hi-yt.lo)*float64(plot.Dy())))
	}

	// Grid, ticks and tick labels.
	for _, v := range yt.values {
		y := py(v)
		fillRect(img, plot.Min.X, y, plot.Dx(), 1, grid)
		fillRect(img, plot.Min.X-tickLen, y, tickLen, 1, black)
		s := yt.format(v)
		drawText(img, plot.Min.X-tickLen-4-textWidth(s, scale), y-textH/2, s, scale, black, false)
	}
	for _, v := range xt.values {
		x := px(v)
		fillRect(img, x, plot.Min.Y, 1, plot.Dy(), grid)
		fillRect(img, x, plot.Max.Y, 1, tickLen, black)
		s := xt.format(v)
		drawText(img, x-textWidth(s, scale)/2, plot.Max.Y+tickLen+4, s, scale, black, false)
	}
	// Axes over the grid.
	fillRect(img, plot.Min.X, plot.Min.Y, 2, plot.Dy()+1, black)
	fillRect(img, plot.Min.X, plot.Max.Y, plot.Dx()+1, 2, black)

	// Labels and title.
	drawText(img, plot.Min.X+(plot.Dx()-textWidth(c.xlabel, scale))/2, c.height-pad-textH, c.xlabel, scale, grey, false)
	drawText(img, pad, plot.Min.Y+(plot.Dy()+textWidth(c.ylabel, scale))/2, c.ylabel, scale, grey, true)
	drawText(img, (c.width-textWidth(c.title, scale))/2, pad, c.title, scale, black, false)

	// Lines, 2 px wide, with a square marker at each point.
	for i, s := range c.series {
		col := seriesColor(i)
		for k, p := range s.pts {
			x, y := px(p.x), py(p.y)
			if k > 0 {
				drawLine(img, px(s.pts[k-1].x), py(s.pts[k-1].y), x, y, col)
			}
			fillRect(img, x-3, y-3, 7, 7, col)
		}
	}

	// Legend on white, in the corner of the plot that hides the fewest
	// data points, so that it covers neither lines nor markers if it can.
	if len(c.series) > 1 || c.series[0].name != c.ylabel {
		lw := 0
		for _, s := range c.series {
			lw = max(lw, textWidth(s.name, scale))
		}
		lineH := textH + 8
		size := image.Pt(pad+24+8+lw+pad, pad+len(c.series)*lineH-8+pad)
		in := plot.Inset(8)
		var box image.Rectangle
		best := -1
		for _, at := range []image.Point{
			in.Min, {in.Max.X - size.X, in.Min.Y}, in.Max.Sub(size), {in.Min.X, in.Max.Y - size.Y},
		} {
			r := image.Rectangle{at, at.Add(size)}
			hidden := 0
			for _, s := range c.series {
				for k, p := range s.pts {
					// The marker, and points along the segment that ends here.
					for f := 0.0; f <= 1 && (k > 0 || f == 0); f += 0.05 {
						q := p
						if k > 0 {
							q = point{s.pts[k-1].x + f*(p.x-s.pts[k-1].x), s.pts[k-1].y + f*(p.y-s.pts[k-1].y)}
						}
						if image.Pt(px(q.x), py(q.y)).In(r.Inset(-4)) {
							hidden++
						}
					}
				}
			}
			if best < 0 || hidden < best {
				box, best = r, hidden
			}
		}
		draw.Draw(img, box, &image.Uniform{white}, image.Point{}, draw.Src)
		fillRect(img, box.Min.X, box.Min.Y, box.Dx(), 1, grey)
		fillRect(img, box.Min.X, box.Max.Y-1, box.Dx(), 1, grey)
		fillRect(img, box.Min.X, box.Min.Y, 1, box.Dy(), grey)
		fillRect(img, box.Max.X-1, box.Min.Y, 1, box.Dy(), grey)
		for i, s := range c.series {
			y := box.Min.Y + pad + i*lineH
			fillRect(img, box.Min.X+pad, y+textH/2-1, 24, 3, seriesColor(i))
			fillRect(img, box.Min.X+pad+9, y+textH/2-3, 7, 7, seriesColor(i))
			drawText(img, box.Min.X+pad+24+8, y, s.name, scale, black, false)
		}
	}
	return img
}

// drawLine draws a 2-pixel-wide line from (x0, y0) to (x1, y1)
// (Bresenham's algorithm, each step a 2×2 square).
func drawLine(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := 1, 1
	if x0 > x1 {
		sx = -1
	}
	if y0 > y1 {
		sy = -1
	}
	e := dx + dy
	for {
		fillRect(img, x0, y0, 2, 2, c)
		if x0 == x1 && y0 == y1 {
			return
		}
		if e2 := 2 * e; e2 >= dy {
			e += dy
			x0 += sx
		} else {
			e += dx
			y0 += sy
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// ticks is an axis: its range and the values that get a tick.
type ticks struct {
	lo, hi, step float64
	values       []float64
	decimals     int
}

// niceTicks covers [lo, hi] with about five steps of 1, 2 or 5 times a
// power of ten, starting and ending on a tick.
func niceTicks(lo, hi float64) ticks {
	if hi <= lo {
		hi = lo + 1
	}
	raw := (hi - lo) / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := 10 * mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	t := ticks{lo: math.Floor(lo/step) * step, hi: math.Ceil(hi/step) * step, step: step}
	for k := 0; ; k++ {
		v := t.lo + float64(k)*step
		if v > t.hi+step/2 {
			break
		}
		t.values = append(t.values, v)
	}
	t.decimals = niceTicksDecimals(step)
	return t
}

// format writes a tick value without trailing zeros; with steps of a
// thousand or more in thousands ("2.5K"), so that long axes stay readable
// in a small font.
func (t ticks) format(v float64) string {
	short := func(v float64, decimals int) string {
		p := math.Pow(10, float64(decimals))
		return strconv.FormatFloat(math.Round(v*p)/p, 'f', -1, 64)
	}
	switch {
	case math.Abs(v) < t.step/1e6:
		return "0"
	case t.step >= 1000:
		return short(v/1000, niceTicksDecimals(t.step/1000)) + "K"
	}
	return short(v, t.decimals)
}

// niceTicksDecimals is how many decimals step needs (2.5 needs one).
func niceTicksDecimals(step float64) int {
	for d := 0; d < 10; d++ {
		if p := math.Pow(10, float64(d)); math.Abs(step*p-math.Round(step*p)) < 1e-9*p {
			return d
		}
	}
	return 10
}
