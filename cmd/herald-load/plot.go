package main

import (
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// -plot draws columns of a CSV file (as written by -csv) as a line chart
// with gonum.org/v1/plot: PNG, or SVG, with real fonts (Liberation Sans,
// compiled into the module, so nothing to install), a title inside the
// image, labelled axes and a legend. The suite that produces the numbers
// produces the pictures on any machine with Go.
//
// A server has one colour in every chart (serverColor), so that Herald,
// the raw baseline and the peer can be told apart at a glance, and
// recognised from one chart to the next.

const plotUsage = `usage: herald-load -plot IN.csv -o OUT.png|OUT.svg [flags]

Draws one line per -y column against the -x column, as a PNG image, or
as SVG when OUT ends in .svg. Rows whose value is empty or not a number
are left out of that line. Both axes start at zero unless a value is
negative.

A line has the colour of the server it measures, the same in every
chart: Herald blue, the raw baseline orange, the peer (Centrifugo)
green. The server is read from the line's -names entry ("Herald",
"raw baseline", "Centrifugo", "peer"), else from its column's prefix
(baseline_, peer_ or centrifugo_; no prefix is Herald's). Several lines
of one server (p50, p90, p99) differ by dash pattern.

  herald-load -plot memory.csv -x conns -y kb_per_conn,baseline_kb_per_conn \
      -names Herald,baseline -ylabel "KB per connection" -o memory.png

flags:
`

// chart is what -plot draws.
type chart struct {
	title, xlabel, ylabel string
	series                []series
	width, height         int // pixels at plotDPI
}

type series struct {
	name   string  // in the legend
	column string  // in the CSV
	pts    []point // sorted by x
}

type point struct{ x, y float64 }

func runPlot(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("herald-load -plot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), plotUsage)
		fs.PrintDefaults()
	}
	out := fs.String("o", "", "PNG file to write, or SVG if it ends in .svg (required)")
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
		s := series{name: legend[k], column: header[yi]}
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

	if err := c.write(*out); err != nil {
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

// Servers whose lines have a colour of their own, the same in every chart.
const (
	serverHerald   = "Herald"
	serverBaseline = "raw baseline"
	serverPeer     = "peer"
	serverOther    = "" // a column that measures none of them (client_*)
)

// serverOf says which server a series measures: from its legend name if
// that says, else from its column, whose prefix -csv sets (baseline_,
// peer_ or centrifugo_; no prefix is Herald's own figure).
func serverOf(s series) string {
	for _, text := range []string{s.name, s.column} {
		text = strings.ToLower(text)
		switch {
		case strings.Contains(text, "centrifugo") || strings.Contains(text, "peer"):
			return serverPeer
		case strings.Contains(text, "baseline"):
			return serverBaseline
		case strings.Contains(text, "herald"):
			return serverHerald
		case strings.HasPrefix(text, "client_"):
			return serverOther
		}
	}
	return serverHerald
}

// serverColor is the palette: Okabe–Ito colours, which stay apart in
// print and for the common forms of colour blindness. Lines that belong
// to no server take the colours no server uses, the k-th such line the
// k-th of them.
func serverColor(server string, k int) color.RGBA {
	switch server {
	case serverHerald:
		return color.RGBA{0x00, 0x72, 0xB2, 0xFF} // blue
	case serverBaseline:
		return color.RGBA{0xE6, 0x9F, 0x00, 0xFF} // orange
	case serverPeer:
		return color.RGBA{0x00, 0x9E, 0x73, 0xFF} // bluish green
	}
	others := [...]color.RGBA{
		{0xCC, 0x79, 0xA7, 0xFF}, // reddish purple
		{0xD5, 0x5E, 0x00, 0xFF}, // vermillion
		{0x56, 0xB4, 0xE9, 0xFF}, // sky blue
		{0x40, 0x40, 0x40, 0xFF}, // dark grey
	}
	return others[k%len(others)]
}

// serverGlyph marks a server's points with a shape of its own, so that
// the lines stay apart in grey too.
func serverGlyph(server string) draw.GlyphDrawer {
	switch server {
	case serverHerald:
		return draw.CircleGlyph{}
	case serverBaseline:
		return draw.BoxGlyph{}
	case serverPeer:
		return draw.PyramidGlyph{}
	}
	return draw.CrossGlyph{}
}

// lineDashes tells apart lines of one server: by the quantile its name or
// column names (p50 solid, p90 dashed, p99 dotted, p99.9 dash-dotted, max
// long-dashed), so that "Herald p99" and "baseline p99" look alike but
// for their colour; else the k-th line of the server gets the k-th
// pattern.
func lineDashes(s series, k int) []vg.Length {
	patterns := [...][]vg.Length{
		nil,
		{vg.Points(7), vg.Points(4)},
		{vg.Points(2), vg.Points(3)},
		{vg.Points(7), vg.Points(3), vg.Points(2), vg.Points(3)},
		{vg.Points(14), vg.Points(4)},
	}
	quantiles := map[string]int{"p50": 0, "p90": 1, "p99": 2, "p999": 3, "p99.9": 3, "max": 4}
	for _, text := range []string{s.name, s.column} {
		words := strings.FieldsFunc(strings.ToLower(text), func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.')
		})
		for _, w := range words {
			if i, ok := quantiles[w]; ok {
				return patterns[i]
			}
		}
	}
	return patterns[k%len(patterns)]
}

// plotDPI is the resolution -width and -height are counted in: a PNG
// gets that many pixels, an SVG that many 96ths of an inch, so that a
// chart looks the same in both.
const plotDPI = 96

func pixels(n int) vg.Length { return vg.Length(n) * vg.Inch / plotDPI }

// write draws the chart into path: SVG if the name ends in .svg, else PNG.
func (c *chart) write(path string) error {
	w, h := pixels(c.width), pixels(c.height)
	var canvas vg.CanvasWriterTo
	if strings.EqualFold(filepath.Ext(path), ".svg") {
		canvas = vgsvg.New(w, h)
	} else {
		canvas = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(plotDPI))}
	}
	if err := c.draw(draw.New(canvas)); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := canvas.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// draw lays the chart out on dc: the title across the top (wrapped if
// it is wider than the image, never clipped), the legend in a column on
// the right, outside the data so that it hides no point, and the plot
// with its axes in what is left.
func (c *chart) draw(dc draw.Canvas) error {
	var (
		sans  = font.Font{Typeface: "Liberation", Variant: "Sans"}
		black = color.RGBA{0x20, 0x20, 0x20, 0xFF}
		grey  = color.RGBA{0xE0, 0xE0, 0xE0, 0xFF}
		style = func(size vg.Length) text.Style {
			return text.Style{Color: black, Font: font.From(sans, size), Handler: plot.DefaultTextHandler}
		}
		margin = vg.Points(10)
	)
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	area := draw.Crop(dc, margin, -margin, margin, -margin)

	titleStyle := style(15)
	titleStyle.XAlign, titleStyle.YAlign = draw.XCenter, draw.YTop
	title := wrapText(c.title, titleStyle, area.Size().X)
	area.FillText(titleStyle, vg.Point{X: area.Center().X, Y: area.Max.Y}, title)
	area.Max.Y -= titleStyle.Height(title) + vg.Points(8)

	p := plot.New()
	for _, ax := range []*plot.Axis{&p.X, &p.Y} {
		ax.Label.TextStyle.Font = font.From(sans, 12)
		ax.Label.TextStyle.Color = black
		ax.Tick.Label.Font = font.From(sans, 11)
		ax.Tick.Label.Color = black
		ax.Label.Padding = vg.Points(4)
		ax.Padding = 0 // the axes meet at their first ticks, 0 and 0
	}
	p.X.Label.Text, p.Y.Label.Text = c.xlabel, c.ylabel

	// Data range, from zero unless something is negative: a chart of
	// memory or latency that does not start at zero exaggerates.
	var xmin, xmax, ymin, ymax float64
	for _, s := range c.series {
		for _, pt := range s.pts {
			xmin, xmax = min(xmin, pt.x), max(xmax, pt.x)
			ymin, ymax = min(ymin, pt.y), max(ymax, pt.y)
		}
	}
	xt, yt := niceTicks(xmin, xmax), niceTicks(ymin, ymax)
	p.X.Min, p.X.Max, p.X.Tick.Marker = xt.lo, xt.hi, xt
	p.Y.Min, p.Y.Max, p.Y.Tick.Marker = yt.lo, yt.hi, yt

	grid := plotter.NewGrid()
	grid.Vertical.Color, grid.Horizontal.Color = grey, grey
	grid.Vertical.Dashes, grid.Horizontal.Dashes = nil, nil
	grid.Vertical.Width, grid.Horizontal.Width = vg.Points(0.75), vg.Points(0.75)
	p.Add(grid)

	legend := plot.NewLegend()
	legend.TextStyle = style(12)
	legend.ThumbnailWidth = vg.Points(30)
	legend.Padding = vg.Points(4)
	legend.Top, legend.Left = true, true
	perServer := map[string]int{}
	for _, s := range c.series {
		server := serverOf(s)
		k := perServer[server]
		perServer[server]++
		if len(s.pts) == 0 {
			legend.Add(s.name + " (no data)")
			continue
		}
		xys := make(plotter.XYs, len(s.pts))
		for i, pt := range s.pts {
			xys[i].X, xys[i].Y = pt.x, pt.y
		}
		line, marks, err := plotter.NewLinePoints(xys)
		if err != nil {
			return fmt.Errorf("series %s: %w", s.name, err)
		}
		col := serverColor(server, k)
		line.LineStyle = draw.LineStyle{Color: col, Width: vg.Points(2), Dashes: lineDashes(s, k)}
		marks.GlyphStyle = draw.GlyphStyle{Color: col, Radius: vg.Points(3.5), Shape: serverGlyph(server)}
		p.Add(line, marks)
		legend.Add(s.name, line, marks)
	}

	// The legend says nothing a single line's y label does not.
	if len(c.series) > 1 || c.series[0].name != c.ylabel {
		lw := legend.Rectangle(area).Size().X
		box := area
		box.Min.X = area.Max.X - lw
		area.Max.X -= lw + vg.Points(14)
		box.Max.Y = p.DataCanvas(area).Max.Y
		legend.Draw(box)
	}
	p.Draw(area)
	return nil
}

// wrapText breaks s between words into lines no wider than width, so
// that a long title stays inside the image.
func wrapText(s string, sty text.Style, width vg.Length) string {
	var lines []string
	line := ""
	for word := range strings.FieldsSeq(s) {
		switch {
		case line == "":
			line = word
		case sty.Width(line+" "+word) <= width:
			line += " " + word
		default:
			lines = append(lines, line)
			line = word
		}
	}
	return strings.Join(append(lines, line), "\n")
}

// Ticks makes ticks a plot.Ticker: the axis gets exactly the values
// niceTicks chose, labelled by format.
func (t ticks) Ticks(lo, hi float64) []plot.Tick {
	out := make([]plot.Tick, 0, len(t.values))
	for _, v := range t.values {
		out = append(out, plot.Tick{Value: v, Label: t.format(v)})
	}
	return out
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
// thousand or more in thousands ("2.5K"), of a million or more in
// millions ("1.5M"), so that long axes stay short.
func (t ticks) format(v float64) string {
	short := func(v float64, decimals int) string {
		p := math.Pow(10, float64(decimals))
		return strconv.FormatFloat(math.Round(v*p)/p, 'f', -1, 64)
	}
	switch {
	case math.Abs(v) < t.step/1e6:
		return "0"
	case t.step >= 1e5 && t.hi >= 1e6:
		return short(v/1e6, niceTicksDecimals(t.step/1e6)) + "M"
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
