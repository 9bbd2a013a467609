package storage

// Nearest returns the candidate closest to name, within a few edits (more
// for longer names), or "" when none is that close or name itself is a
// candidate. Ties go to the first candidate. It is for "did you mean"
// hints on typos ("dmeo" for "demo", "lsit" for "list"); callers choose
// the candidates, so a hint never names what the asker may not see.
func Nearest(name string, candidates []string) string {
	limit := min(3, 1+len(name)/5)
	best, bestD := "", limit+1
	for _, c := range candidates {
		if c == name {
			return ""
		}
		if d := EditDistance(name, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// EditDistance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and swaps of two neighbouring
// characters ("dmeo" → "demo") each count one.
func EditDistance(a, b string) int {
	x, y := []rune(a), []rune(b)
	// Three rows of the dynamic programming table: two back, one back, now.
	prev2, prev, cur := make([]int, len(y)+1), make([]int, len(y)+1), make([]int, len(y)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(x); i++ {
		cur[0] = i
		for j := 1; j <= len(y); j++ {
			cost := 1
			if x[i-1] == y[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && x[i-1] == y[j-2] && x[i-2] == y[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(y)]
}
