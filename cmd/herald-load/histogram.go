package main

import (
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
)

// histogram is a log-linear ("HDR-style") histogram of non-negative int64
// values, here nanoseconds. Values below 2*histSub are counted exactly;
// above, every power-of-two range is split into histSub equal buckets, so a
// bucket is never wider than 1/histSub (0.8%) of the values it holds. That
// keeps p99.9 honest at a fixed, small size (a few KB whatever the count),
// and two histograms merge by adding counts, which is how the workers'
// latencies are combined.
//
// It is not safe for concurrent use.
type histogram struct {
	counts   []uint64
	n        uint64
	min, max int64
	sum      float64
}

const (
	histSubBits = 7
	histSub     = 1 << histSubBits
	// histMaxBits bounds the range: 2^42 ns is over an hour, longer than
	// any run; larger values are clamped into the last bucket.
	histMaxBits = 42
	histMax     = int64(1)<<histMaxBits - 1
)

func newHistogram() *histogram {
	return &histogram{counts: make([]uint64, bucketOf(histMax)+1)}
}

// bucketOf maps v (0 ≤ v ≤ histMax) to its bucket index.
func bucketOf(v int64) int {
	u := uint64(v)
	if u < histSub {
		return int(u)
	}
	// u>>shift lies in [histSub, 2*histSub): the top histSubBits+1 bits.
	shift := bits.Len64(u) - histSubBits - 1
	return (shift+1)*histSub + int(u>>shift) - histSub
}

// bucketRange returns the lowest value of bucket i and the bucket's width.
func bucketRange(i int) (low, width int64) {
	if i < 2*histSub {
		return int64(i), 1
	}
	shift := i/histSub - 1
	mant := int64(i%histSub + histSub)
	return mant << shift, int64(1) << shift
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
	h.counts[bucketOf(min(v, histMax))]++
}

func (h *histogram) count() uint64 { return h.n }

func (h *histogram) mean() float64 {
	if h.n == 0 {
		return 0
	}
	return h.sum / float64(h.n)
}

// quantile returns the value below or at which a fraction q of the values
// lie, as the highest value of its bucket (clamped to the exact min and
// max), so it never under-reports.
func (h *histogram) quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	if q <= 0 {
		return h.min
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			if i == len(h.counts)-1 {
				return h.max // the clamped bucket: only max is known
			}
			low, width := bucketRange(i)
			return min(max(low+width-1, h.min), h.max)
		}
	}
	return h.max
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
	for i, c := range o.counts {
		h.counts[i] += c
	}
}

// histJSON is the sparse wire form workers send: only non-empty buckets.
type histJSON struct {
	N       uint64      `json:"n"`
	Min     int64       `json:"min"`
	Max     int64       `json:"max"`
	Sum     float64     `json:"sum"`
	Buckets [][2]uint64 `json:"b,omitempty"` // [index, count]
}

func (h *histogram) MarshalJSON() ([]byte, error) {
	out := histJSON{N: h.n, Min: h.min, Max: h.max, Sum: h.sum}
	for i, c := range h.counts {
		if c != 0 {
			out.Buckets = append(out.Buckets, [2]uint64{uint64(i), c})
		}
	}
	return json.Marshal(out)
}

func (h *histogram) UnmarshalJSON(b []byte) error {
	var in histJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	*h = *newHistogram()
	h.n, h.min, h.max, h.sum = in.N, in.Min, in.Max, in.Sum
	var total uint64
	for _, b := range in.Buckets {
		if b[0] >= uint64(len(h.counts)) {
			return fmt.Errorf("histogram bucket %d out of range", b[0])
		}
		h.counts[b[0]] += b[1]
		total += b[1]
	}
	if total != h.n {
		return fmt.Errorf("histogram buckets hold %d values, header says %d", total, h.n)
	}
	return nil
}
