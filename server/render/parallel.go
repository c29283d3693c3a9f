package render

import (
	"runtime"
	"sync"
)

// parallelMin is the number of items (pixels) below which one goroutine does all the work.
const parallelMin = 1 << 16

// parts is how many goroutines split n items: up to GOMAXPROCS, at least parallelMin/2 each.
func parts(n int) int {
	p := runtime.GOMAXPROCS(0)
	if n < parallelMin || p < 2 {
		return 1
	}
	return max(1, min(p, n/(parallelMin/2)))
}

// split runs fn over [0,n) cut into at most np contiguous ranges whose starts are multiples of
// align, concurrently when np > 1. part numbers the ranges from 0.
func split(n, np, align int, fn func(part, i0, i1 int)) {
	if np <= 1 || n <= align {
		fn(0, 0, n)
		return
	}
	per := (n + np - 1) / np
	per = (per + align - 1) / align * align
	var wg sync.WaitGroup
	part := 0
	for i0 := 0; i0 < n; i0 += per {
		wg.Add(1)
		go func(part, i0, i1 int) {
			defer wg.Done()
			fn(part, i0, i1)
		}(part, i0, min(i0+per, n))
		part++
	}
	wg.Wait()
}
