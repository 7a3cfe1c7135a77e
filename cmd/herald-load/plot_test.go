package main

import (
	"encoding/xml"
	"image/color"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/text"
)

func TestNiceTicks(t *testing.T) {
	for _, tc := range []struct {
		lo, hi float64
		want   []string
	}{
		{0, 19000, []string{"0", "5K", "10K", "15K", "20K"}},
		{0, 6, []string{"0", "2", "4", "6"}},
		{0, 10000, []string{"0", "2K", "4K", "6K", "8K", "10K"}},
		{0, 12000, []string{"0", "2.5K", "5K", "7.5K", "10K", "12.5K"}},
		{0, 0.37, []string{"0", "0.1", "0.2", "0.3", "0.4"}},
		{-3, 4, []string{"-4", "-2", "0", "2", "4"}},
		{0, 0, []string{"0", "0.2", "0.4", "0.6", "0.8", "1"}},
		{0, 2_400_000, []string{"0", "0.5M", "1M", "1.5M", "2M", "2.5M"}},
	} {
		tk := niceTicks(tc.lo, tc.hi)
		var got []string
		for _, v := range tk.values {
			got = append(got, tk.format(v))
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("niceTicks(%v, %v) = %q, want %q", tc.lo, tc.hi, got, tc.want)
		}
	}
}

// A line's server, and so its colour, comes from its legend name, else
// from its column's prefix.
func TestServerOf(t *testing.T) {
	for _, tc := range []struct {
		name, column, want string
	}{
		{"Herald", "kb_per_conn", serverHerald},
		{"raw baseline", "baseline_kb_per_conn", serverBaseline},
		{"Centrifugo", "peer_kb_per_conn", serverPeer},
		{"p99", "p99_ms", serverHerald},
		{"baseline p99", "baseline_p99_ms", serverBaseline},
		{"p99", "peer_p99_ms", serverPeer},
		{"p99", "centrifugo_p99_ms", serverPeer},
		{"load tool", "client_kb_per_conn", serverOther},
	} {
		if got := serverOf(series{name: tc.name, column: tc.column}); got != tc.want {
			t.Errorf("serverOf(%q, %q) = %q, want %q", tc.name, tc.column, got, tc.want)
		}
	}
	// No two servers share a colour, nor does a line of no server.
	seen := map[color.RGBA]string{}
	for _, s := range []string{serverHerald, serverBaseline, serverPeer, serverOther} {
		for k := range 4 {
			c := serverColor(s, k)
			if prev, dup := seen[c]; dup && prev != s {
				t.Errorf("%q and %q share %v", prev, s, c)
			}
			seen[c] = s
		}
	}
}

func TestPlot(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "memory.csv")
	csvText := "conns,kb_per_conn,baseline_kb_per_conn,note\n" +
		"1000,5.1,1.2,x\n" +
		"19000,3.6,0.9,y\n" +
		"5000,3.9,,z\n" // unsorted, and a missing value
	if err := os.WriteFile(in, []byte(csvText), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "memory.png")
	err := runPlot([]string{in, "-x", "conns", "-y", "kb_per_conn,baseline_kb_per_conn", "-names", "Herald,baseline",
		"-ylabel", "KB per connection", "-o", out, "-width", "640", "-height", "400"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 640 || b.Dy() != 400 {
		t.Fatalf("size %v", b)
	}
	// Both series were drawn, each in its server's colour.
	counts := map[color.RGBA]int{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, a := img.At(x, y).RGBA()
			counts[color.RGBA{uint8(r >> 8), uint8(g >> 8), uint8(bl >> 8), uint8(a >> 8)}]++
		}
	}
	for _, s := range []string{serverHerald, serverBaseline} {
		if n := counts[serverColor(s, 0)]; n < 50 {
			t.Errorf("%s: %d pixels of its colour", s, n)
		}
	}

	// SVG when the name says so, with the text as text.
	svg := filepath.Join(dir, "memory.svg")
	if err := runPlot([]string{in, "-y", "kb_per_conn,baseline_kb_per_conn", "-names", "Herald,raw baseline",
		"-title", "Server memory per idle connection", "-o", svg}, io.Discard); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<svg", "Server memory per idle connection", "raw baseline", ">conns<"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("SVG has no %q", want)
		}
	}
	if err := xml.Unmarshal(data, new(struct{})); err != nil {
		t.Errorf("SVG is not XML: %v", err)
	}

	for _, args := range [][]string{
		{in},                             // no -o
		{"-o", out},                      // no input
		{in, "-o", out, "-y", "nope"},    // no such column
		{in, "-o", out, "-y", "note"},    // nothing numeric
		{in, "-o", out, "-names", "a,b"}, // three -y columns by default
	} {
		if err := runPlot(args, io.Discard); err == nil {
			t.Errorf("runPlot(%q) succeeded", args)
		} else if !strings.Contains(err.Error(), "-plot") {
			t.Errorf("runPlot(%q): error %q does not say -plot", args, err)
		}
	}
}

// Lines of one quantile share a dash pattern whatever their server.
func TestLineDashes(t *testing.T) {
	same := [][2]series{
		{{name: "p99", column: "p99_ms"}, {name: "baseline p99", column: "baseline_p99_ms"}},
		{{name: "Herald p99.9"}, {name: "x", column: "peer_p999_ms"}},
		{{name: "p50"}, {name: "Herald"}}, // the first line of a server is solid
	}
	for _, pair := range same {
		if a, b := lineDashes(pair[0], 0), lineDashes(pair[1], 0); !slices.Equal(a, b) {
			t.Errorf("%q %v, %q %v", pair[0].name, a, pair[1].name, b)
		}
	}
	if slices.Equal(lineDashes(series{name: "p50"}, 0), lineDashes(series{name: "p99"}, 0)) ||
		slices.Equal(lineDashes(series{name: "a"}, 0), lineDashes(series{name: "b"}, 1)) {
		t.Error("distinct lines of one server look alike")
	}
}

// A title wider than the image is wrapped between words, never clipped.
func TestWrapText(t *testing.T) {
	sty := text.Style{Font: font.From(font.Font{Typeface: "Liberation", Variant: "Sans"}, 15), Handler: plot.DefaultTextHandler}
	title := "Notify latency via POST /v1/batch (up to 100, 3ms wait), 10000 connected users"
	width := sty.Width(title) * 2 / 3
	got := wrapText(title, sty, width)
	lines := strings.Split(got, "\n")
	if len(lines) != 2 || strings.Join(lines, " ") != title {
		t.Fatalf("wrapText = %q", got)
	}
	for _, l := range lines {
		if sty.Width(l) > width {
			t.Errorf("line %q is wider than %v", l, width)
		}
	}
	if got := wrapText("short", sty, width); got != "short" {
		t.Errorf("wrapText(short) = %q", got)
	}
}
