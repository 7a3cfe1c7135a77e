package main

import (
	"image/color"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
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

// Every character the suite's labels use has a glyph of its own (unknown
// ones fall back to '?').
func TestGlyphs(t *testing.T) {
	unknown := glyph('?')
	seen := map[[glyphH]uint8]rune{}
	for _, r := range "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ.,:-+=_/()%'" {
		g := glyph(r)
		if g == unknown {
			t.Errorf("%q has no glyph", r)
		}
		if prev, dup := seen[g]; dup {
			t.Errorf("%q and %q share a glyph", prev, r)
		}
		seen[g] = r
	}
	if glyph('k') != glyph('K') || glyph('~') != unknown || glyph(' ') != [glyphH]uint8{} {
		t.Error("lower case, unknown characters or space")
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
	// Both series were drawn: pixels of each color exist.
	counts := map[color.RGBA]int{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, a := img.At(x, y).RGBA()
			counts[color.RGBA{uint8(r >> 8), uint8(g >> 8), uint8(bl >> 8), uint8(a >> 8)}]++
		}
	}
	for i := range 2 {
		if counts[seriesColor(i)] < 50 {
			t.Errorf("series %d: %d pixels of its color", i, counts[seriesColor(i)])
		}
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
