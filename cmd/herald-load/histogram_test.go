package main

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// histPrecision is the widest relative error a quantile may have above
// the exact value: 3 significant digits in HDR are buckets of at most
// 1/1024 of their values.
const histPrecision = 1.0 / 1024

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

// The rank of a quantile is ⌈q·n⌉ (nearest rank), not hdrhistogram-go's
// q·n rounded to the nearest integer.
func TestHistogramNearestRank(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		q    float64
		rank int64
	}{
		{170, 0.99, 169}, // 168.3: the library alone would say 168
		{1300, 0.999, 1299},
		{10, 0.5, 5},
		{11, 0.5, 6},
		{3, 0.01, 1},
	} {
		h := newHistogram()
		for i := range tc.n {
			h.record((i + 1) * 1000) // 1 µs, 2 µs, …: each value its own bucket
		}
		if got, want := h.quantile(tc.q), tc.rank*1000; got < want || float64(got-want) > float64(want)*histPrecision {
			t.Errorf("n %d: quantile(%v) = %d, want the %dth value %d", tc.n, tc.q, got, tc.rank, want)
		}
	}
}

func TestHistogramRelativeError(t *testing.T) {
	// Shuffled latencies from 1µs to 10s: each quantile is within one
	// bucket above the exact one, never below it.
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
		if got < exact || float64(got-exact) > float64(exact)*histPrecision {
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
		if len(data) > 20_000 {
			t.Errorf("%d bytes of JSON for %d values", len(data), h.count())
		}
		var back histogram
		if err := json.Unmarshal(data, &back); err != nil {
			t.Fatal(err)
		}
		merged.merge(&back)
	}
	if !merged.hdr.Equals(all.hdr) || merged.n != all.n || merged.min != all.min || merged.max != all.max || merged.sum != all.sum {
		t.Fatal("merged histogram differs from the histogram of all values")
	}
	for _, q := range []float64{0, 0.5, 0.99, 0.999, 1} {
		if merged.quantile(q) != all.quantile(q) {
			t.Errorf("quantile(%v): merged %d, all %d", q, merged.quantile(q), all.quantile(q))
		}
	}
	merged.merge(newHistogram()) // merging an empty one changes nothing
	if merged.min != all.min {
		t.Fatalf("min %d after merging an empty histogram", merged.min)
	}

	// An empty histogram survives the trip too.
	data, err := json.Marshal(newHistogram())
	if err != nil {
		t.Fatal(err)
	}
	var empty histogram
	if err := json.Unmarshal(data, &empty); err != nil || empty.count() != 0 || empty.quantile(0.5) != 0 {
		t.Fatalf("empty histogram: %v, count %d", err, empty.count())
	}

	two := newHistogram()
	two.record(1)
	two.record(2)
	enc, err := json.Marshal(two)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		strings.Replace(string(enc), `"n":2`, `"n":3`, 1), // counts and header disagree
		`{"n":3}`,                      // values without counts
		`{"n":1,"hdr":"bm90IGhkcg=="}`, // not an HDR encoding
	} {
		var h histogram
		if err := json.Unmarshal([]byte(bad), &h); err == nil {
			t.Errorf("inconsistent histogram %s accepted", bad)
		}
	}
}
