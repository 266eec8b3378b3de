package timer

// entryHeap is a min-heap of entries by (due, qoff), without the interface boxing of
// container/heap: it holds the near window, up to Config.MaxHeapEntries.
type entryHeap []entry

func (h *entryHeap) push(e entry) {
	*h = append(*h, e)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !s[i].less(s[p]) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h entryHeap) top() (entry, bool) {
	if len(h) == 0 {
		return entry{}, false
	}
	return h[0], true
}

func (h *entryHeap) pop() entry {
	s := *h
	e := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s = s[:n]
	i := 0
	for {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && s[l].less(s[m]) {
			m = l
		}
		if r < n && s[r].less(s[m]) {
			m = r
		}
		if m == i {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	if cap(s) > 1024 && len(s) < cap(s)/4 {
		*h = append(entryHeap(nil), s...) // give back the memory of a drained burst
	}
	return e
}
