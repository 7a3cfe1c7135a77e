package main

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// histogram holds non-negative int64 values, here nanoseconds, in an HDR
// histogram (github.com/HdrHistogram/hdrhistogram-go): values up to
// histMax are kept to histDigits significant digits (exact below 2,048, a
// bucket at most 1/1024 of its values wide above), so p99.9 stays honest
// at a fixed size whatever the count (about 250 KB), and two histograms
// merge by adding counts, which is how the workers' latencies are
// combined.
//
// Next to it are the exact count, minimum, maximum and sum: the HDR
// histogram knows them only to its precision, and the report prints the
// extremes and the mean as measured.
//
// It is not safe for concurrent use.
type histogram struct {
	hdr      *hdrhistogram.Histogram
	n        uint64
	min, max int64
	sum      float64
}

const (
	// histLow is the smallest value told apart from its neighbours. At
	// 1 ns, the relative precision holds all the way down: with 1 µs,
	// HDR would count everything below a millisecond in 512 ns steps,
	// 2% of a 25 µs delivery.
	histLow = int64(1)
	// histMax bounds the range: 10 minutes is longer than any point of
	// the suite; larger values are counted at histMax (max stays exact).
	histMax = int64(10 * 60 * 1e9)
	// histDigits significant digits: a quantile is within 0.1% of the
	// value it stands for.
	histDigits = 3
)

func newHistogram() *histogram {
	return &histogram{hdr: hdrhistogram.New(histLow, histMax, histDigits)}
}

// record adds one value. Negative values (a clock step between two
// processes) count as 0.
func (h *histogram) record(v int64) {
	v = max(v, 0)
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += float64(v)
	// In range by construction, so RecordValue cannot fail.
	_ = h.hdr.RecordValue(min(v, histMax))
}

func (h *histogram) count() uint64 { return h.n }

func (h *histogram) mean() float64 {
	if h.n == 0 {
		return 0
	}
	return h.sum / float64(h.n)
}

// quantile returns the value below or at which a fraction q of the values
// lie, as the highest value equivalent to it in the HDR histogram
// (clamped to the exact min and max), so it never under-reports.
//
// The rank is ⌈q·n⌉, the nearest-rank definition: hdrhistogram-go
// rounds q·n to the nearest integer instead, which for p99 of 170 values
// would pick the 168th rather than the 169th. The rank is handed to the
// library as the percentile that yields exactly it (the library adds 0.5
// and truncates, which lands back on the rank).
func (h *histogram) quantile(q float64) int64 {
	switch {
	case h.n == 0:
		return 0
	case q <= 0:
		return h.min
	case q >= 1:
		return h.max
	}
	rank := min(max(uint64(math.Ceil(q*float64(h.n))), 1), h.n)
	if rank == h.n {
		return h.max
	}
	v := h.hdr.ValueAtPercentile(100 * float64(rank) / float64(h.n))
	return min(max(v, h.min), h.max)
}

// merge adds o's values to h.
func (h *histogram) merge(o *histogram) {
	if o == nil || o.n == 0 {
		return
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
	h.sum += o.sum
	h.hdr.Merge(o.hdr) // same range on both sides: nothing is dropped
}

// histJSON is the wire form workers send. The counts travel in HDR's own
// V2 compressed encoding (zlib, runs of empty buckets as one number, then
// base64), a few hundred bytes where the plain list of the ~31,000
// buckets Export returns would be tens of kilobytes, and a format other
// HDR tools read.
type histJSON struct {
	N   uint64  `json:"n"`
	Min int64   `json:"min"`
	Max int64   `json:"max"`
	Sum float64 `json:"sum"`
	HDR string  `json:"hdr,omitempty"`
}

func (h *histogram) MarshalJSON() ([]byte, error) {
	enc, err := h.hdr.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	if err != nil {
		return nil, fmt.Errorf("encode histogram: %w", err)
	}
	return json.Marshal(histJSON{N: h.n, Min: h.min, Max: h.max, Sum: h.sum, HDR: string(enc)})
}

func (h *histogram) UnmarshalJSON(b []byte) error {
	var in histJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	*h = *newHistogram()
	h.n, h.min, h.max, h.sum = in.N, in.Min, in.Max, in.Sum
	if in.HDR == "" {
		if in.N != 0 {
			return fmt.Errorf("histogram of %d values has no counts", in.N)
		}
		return nil
	}
	dec, err := hdrhistogram.Decode([]byte(in.HDR))
	if err != nil {
		return fmt.Errorf("decode histogram: %w", err)
	}
	// Into our own range, so that quantiles and later merges see the
	// geometry every histogram here has.
	if dropped := h.hdr.Merge(dec); dropped != 0 {
		return fmt.Errorf("histogram holds %d values outside [%d, %d]", dropped, histLow, histMax)
	}
	if got := h.hdr.TotalCount(); got < 0 || uint64(got) != h.n {
		return fmt.Errorf("histogram counts hold %d values, header says %d", got, h.n)
	}
	return nil
}
