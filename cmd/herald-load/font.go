package main

import (
	"image"
	"image/color"
	"unicode"
)

// A 5×7 bitmap font, just enough for chart labels: digits, capital letters
// (lower case is drawn as capitals) and the punctuation units and numbers
// need. The standard library has no font rasterizer, and -plot must need
// nothing else. Each glyph is 7 rows, top first; bit 4 of a row is its
// leftmost pixel.

const (
	glyphW   = 5
	glyphH   = 7
	glyphAdv = glyphW + 1 // one column of spacing
)

// glyph returns the bitmap of r; characters it does not know are drawn as
// '?'.
func glyph(r rune) [glyphH]uint8 {
	switch unicode.ToUpper(r) {
	case ' ':
		return [7]uint8{}
	case '0':
		return [7]uint8{0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110}
	case '1':
		return [7]uint8{0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110}
	case '2':
		return [7]uint8{0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111}
	case '3':
		return [7]uint8{0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110}
	case '4':
		return [7]uint8{0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010}
	case '5':
		return [7]uint8{0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110}
	case '6':
		return [7]uint8{0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110}
	case '7':
		return [7]uint8{0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000}
	case '8':
		return [7]uint8{0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110}
	case '9':
		return [7]uint8{0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100}
	case 'A':
		return [7]uint8{0b01110, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001}
	case 'B':
		return [7]uint8{0b11110, 0b10001, 0b10001, 0b11110, 0b10001, 0b10001, 0b11110}
	case 'C':
		return [7]uint8{0b01110, 0b10001, 0b10000, 0b10000, 0b10000, 0b10001, 0b01110}
	case 'D':
		return [7]uint8{0b11100, 0b10010, 0b10001, 0b10001, 0b10001, 0b10010, 0b11100}
	case 'E':
		return [7]uint8{0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b11111}
	case 'F':
		return [7]uint8{0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b10000}
	case 'G':
		return [7]uint8{0b01110, 0b10001, 0b10000, 0b10111, 0b10001, 0b10001, 0b01111}
	case 'H':
		return [7]uint8{0b10001, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001}
	case 'I':
		return [7]uint8{0b01110, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110}
	case 'J':
		return [7]uint8{0b00111, 0b00010, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100}
	case 'K':
		return [7]uint8{0b10001, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b10001}
	case 'L':
		return [7]uint8{0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b11111}
	case 'M':
		return [7]uint8{0b10001, 0b11011, 0b10101, 0b10101, 0b10001, 0b10001, 0b10001}
	case 'N':
		return [7]uint8{0b10001, 0b10001, 0b11001, 0b10101, 0b10011, 0b10001, 0b10001}
	case 'O':
		return [7]uint8{0b01110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110}
	case 'P':
		return [7]uint8{0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000, 0b10000}
	case 'Q':
		return [7]uint8{0b01110, 0b10001, 0b10001, 0b10001, 0b10101, 0b10010, 0b01101}
	case 'R':
		return [7]uint8{0b11110, 0b10001, 0b10001, 0b11110, 0b10100, 0b10010, 0b10001}
	case 'S':
		return [7]uint8{0b01111, 0b10000, 0b10000, 0b01110, 0b00001, 0b00001, 0b11110}
	case 'T':
		return [7]uint8{0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100}
	case 'U':
		return [7]uint8{0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110}
	case 'V':
		return [7]uint8{0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100}
	case 'W':
		return [7]uint8{0b10001, 0b10001, 0b10001, 0b10101, 0b10101, 0b10101, 0b01010}
	case 'X':
		return [7]uint8{0b10001, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b10001}
	case 'Y':
		return [7]uint8{0b10001, 0b10001, 0b10001, 0b01010, 0b00100, 0b00100, 0b00100}
	case 'Z':
		return [7]uint8{0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b11111}
	case '.':
		return [7]uint8{0, 0, 0, 0, 0, 0b01100, 0b01100}
	case ',':
		return [7]uint8{0, 0, 0, 0, 0b01100, 0b00100, 0b01000}
	case ':':
		return [7]uint8{0, 0b01100, 0b01100, 0, 0b01100, 0b01100, 0}
	case '-':
		return [7]uint8{0, 0, 0, 0b11111, 0, 0, 0}
	case '+':
		return [7]uint8{0, 0b00100, 0b00100, 0b11111, 0b00100, 0b00100, 0}
	case '=':
		return [7]uint8{0, 0, 0b11111, 0, 0b11111, 0, 0}
	case '_':
		return [7]uint8{0, 0, 0, 0, 0, 0, 0b11111}
	case '/':
		return [7]uint8{0, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0}
	case '(':
		return [7]uint8{0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00100, 0b00010}
	case ')':
		return [7]uint8{0b01000, 0b00100, 0b00010, 0b00010, 0b00010, 0b00100, 0b01000}
	case '%':
		return [7]uint8{0b11000, 0b11001, 0b00010, 0b00100, 0b01000, 0b10011, 0b00011}
	case '\'':
		return [7]uint8{0b01100, 0b00100, 0b01000, 0, 0, 0, 0}
	default:
		return [7]uint8{0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0, 0b00100}
	}
}

// textWidth is the width in pixels of s drawn at scale.
func textWidth(s string, scale int) int {
	n := len([]rune(s))
	if n == 0 {
		return 0
	}
	return (n*glyphAdv - 1) * scale
}

// drawText draws s with its top-left corner at (x, y), each font pixel a
// scale×scale square. With up, the text runs bottom to top (a y-axis
// label) and (x, y) is its bottom-left corner.
func drawText(img *image.RGBA, x, y int, s string, scale int, c color.RGBA, up bool) {
	for i, r := range []rune(s) {
		g := glyph(r)
		for row := range glyphH {
			for col := range glyphW {
				if g[row]&(1<<(glyphW-1-col)) == 0 {
					continue
				}
				// Along the text: i*glyphAdv+col; across it: row.
				along, across := (i*glyphAdv+col)*scale, row*scale
				px, py := x+along, y+across
				if up {
					px, py = x+across, y-along-scale
				}
				fillRect(img, px, py, scale, scale, c)
			}
		}
	}
}

// fillRect fills the w×h rectangle at (x, y), clipped to img.
func fillRect(img *image.RGBA, x, y, w, h int, c color.RGBA) {
	r := image.Rect(x, y, x+w, y+h).Intersect(img.Bounds())
	for py := r.Min.Y; py < r.Max.Y; py++ {
		for px := r.Min.X; px < r.Max.X; px++ {
			img.SetRGBA(px, py, c)
		}
	}
}
