package main

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestHistogramBuckets(t *testing.T) {
	// Every value lands in a bucket that contains it, buckets are
	// contiguous, and a bucket is at most 1/histSub of its values wide.
	prevLow, prevWidth := int64(-1), int64(1)
	for i := range bucketOf(histMax) + 1 {
		low, width := bucketRange(i)
		if low != prevLow+prevWidth {
			t.Fatalf("bucket %d starts at %d, previous ended at %d", i, low, prevLow+prevWidth)
		}
		if width > 1 && float64(width)/float64(low) > 1.0/histSub {
			t.Fatalf("bucket %d [%d,+%d) is too wide", i, low, width)
		}
		for _, v := range []int64{low, low + width - 1} {
			if got := bucketOf(v); got != i {
				t.Fatalf("bucketOf(%d) = %d, want %d", v, got, i)
			}
		}
		prevLow, prevWidth = low, width
	}
	if prevLow+prevWidth-1 != histMax {
		t.Fatalf("last bucket ends at %d, want %d", prevLow+prevWidth-1, histMax)
	}
}

func TestHistogramSmallValuesExact(t *testing.T) {
	h := newHistogram()
	for v := int64(1); v <= 100; v++ {
		h.record(v)
	}
	for _, tc := range []struct {
		q    float64
		want int64
	}{{0, 1}, {0.01, 1}, {0.5, 50}, {0.9, 90}, {0.99, 99}, {0.999, 100}, {1, 100}} {
		if got := h.quantile(tc.q); got != tc.want {
			t.Errorf("quantile(%v) = %d, want %d", tc.q, got, tc.want)
		}
	}
	if h.count() != 100 || h.min != 1 || h.max != 100 || h.mean() != 50.5 {
		t.Fatalf("count %d min %d max %d mean %v", h.count(), h.min, h.max, h.mean())
	}
}

func TestHistogramRelativeError(t *testing.T) {
	// Shuffled latencies from 1µs to 10s: each quantile is within one
	// bucket (≤ 1/histSub) above the exact one, never below it.
	r := rand.New(rand.NewPCG(1, 2))
	vals := make([]int64, 200_000)
	for i := range vals {
		vals[i] = 1000 + r.Int64N(10_000_000_000)
	}
	h := newHistogram()
	for _, v := range vals {
		h.record(v)
	}
	slices.Sort(vals)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 0.9999} {
		exact := vals[int(q*float64(len(vals)))-1]
		got := h.quantile(q)
		if got < exact || float64(got-exact) > float64(exact)/histSub {
			t.Errorf("quantile(%v) = %d, exact %d", q, got, exact)
		}
	}
	if h.quantile(1) != vals[len(vals)-1] || h.quantile(0) != vals[0] {
		t.Errorf("extremes %d %d, want %d %d", h.quantile(0), h.quantile(1), vals[0], vals[len(vals)-1])
	}
}

func TestHistogramClampAndNegative(t *testing.T) {
	h := newHistogram()
	h.record(-5)
	h.record(histMax * 4)
	if h.min != 0 || h.count() != 2 || h.quantile(0.5) != 0 {
		t.Fatalf("min %d count %d p50 %d", h.min, h.count(), h.quantile(0.5))
	}
	if h.quantile(1) != histMax*4 {
		t.Fatalf("max %d", h.quantile(1))
	}
}

func TestHistogramMergeAndJSON(t *testing.T) {
	a, b, all := newHistogram(), newHistogram(), newHistogram()
	for i := range int64(5000) {
		v := i * i * 37
		all.record(v)
		if i%3 == 0 {
			a.record(v)
		} else {
			b.record(v)
		}
	}
	// Merging what travelled as JSON gives the histogram of everything.
	merged := newHistogram()
	for _, h := range []*histogram{a, b} {
		data, err := json.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		var back histogram
		if err := json.Unmarshal(data, &back); err != nil {
			t.Fatal(err)
		}
		merged.merge(&back)
	}
	if !slices.Equal(merged.counts, all.counts) || merged.n != all.n || merged.min != all.min || merged.max != all.max || merged.sum != all.sum {
		t.Fatal("merged histogram differs from the histogram of all values")
	}
	merged.merge(newHistogram()) // merging an empty one changes nothing
	if merged.min != all.min {
		t.Fatalf("min %d after merging an empty histogram", merged.min)
	}
	var bad histogram
	if err := json.Unmarshal([]byte(`{"n":3,"b":[[1,2]]}`), &bad); err == nil {
		t.Fatal("inconsistent histogram accepted")
	}
}
