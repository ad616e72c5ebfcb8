package evaluation

import "testing"

// tally is a hand-made Tally: caught of visible, rolled back of no-change.
func tally(caught, visible, rolled, noChange int) Tally {
	return Tally{Visible: visible, Caught: caught, NoChange: noChange, RolledBack: rolled, Applies: true}
}

// TestPicks checks the choices of the curves report on hand-made figures:
// made on the development half only (every held-out figure here points
// elsewhere), never at a rollback rate over the reference's, never under
// its catch rate, and by rates, not counts.
func TestPicks(t *testing.T) {
	ref := tally(90, 100, 4, 100) // dev: 90% caught, 4% rolled back
	pts := []Point{
		{Dev: tally(90, 100, 3, 100), Held: tally(50, 100, 1, 100)},
		{Dev: tally(95, 100, 4, 100), Held: tally(60, 100, 10, 100)},  // at the rate: the pick
		{Dev: tally(99, 100, 5, 100), Held: tally(100, 100, 0, 100)},  // over the rate, best held-out
		{Dev: tally(100, 100, 2, 40), Held: tally(100, 100, 0, 100)},  // 2 rollbacks, but 5%
		{Dev: tally(80, 100, 1, 100), Held: tally(100, 100, 0, 100)},  // careful, catches less
		{Dev: tally(100, 100, 0, 100), Held: tally(100, 100, 0, 100)}, // does not apply
	}
	pts[5].Dev.Applies = false
	if got := AtRate(pts, ref); got != 1 {
		t.Errorf("AtRate = %d, want 1 (95%% caught at 4%%, the reference's rate)", got)
	}
	// The same catch share at fewer rollbacks wins a tie.
	tie := append([]Point{{Dev: tally(19, 20, 1, 50), Held: tally(0, 20, 50, 50)}}, pts...)
	if got := AtRate(tie, ref); got != 0 {
		t.Errorf("AtRate with a tie = %d, want 0 (95%% caught at 2%%)", got)
	}
	if got := AtRate(pts[2:4], ref); got != -1 {
		t.Errorf("AtRate with every setting over the rate = %d, want -1", got)
	}

	pts = []Point{
		{Dev: tally(89, 100, 0, 100), Held: tally(100, 100, 0, 100)}, // catches less
		{Dev: tally(90, 100, 5, 100), Held: tally(100, 100, 0, 100)},
		{Dev: tally(18, 20, 3, 100), Held: tally(100, 100, 0, 100)},  // 90% at 3%
		{Dev: tally(95, 100, 3, 100), Held: tally(10, 100, 50, 100)}, // 95% at 3%: the pick
		{Dev: tally(45, 50, 1, 20), Held: tally(100, 100, 0, 100)},   // 1 rollback, but 5%
	}
	if got := ToCatch(pts, ref); got != 3 {
		t.Errorf("ToCatch = %d, want 3 (95%% caught at 3%%)", got)
	}
	if got := ToCatch(pts[:1], ref); got != -1 {
		t.Errorf("ToCatch with every setting under the catch rate = %d, want -1", got)
	}

	for _, c := range []struct {
		p, ref Tally
		want   bool
	}{
		{tally(91, 100, 4, 100), tally(90, 100, 4, 100), true},
		{tally(90, 100, 3, 100), tally(90, 100, 4, 100), true},
		{tally(90, 100, 4, 100), tally(90, 100, 4, 100), false},
		{tally(95, 100, 5, 100), tally(90, 100, 4, 100), false},
		{tally(0, 0, 1, 100), tally(0, 0, 2, 100), true}, // no regressions: fewer rollbacks
		{tally(0, 0, 2, 100), tally(0, 0, 2, 100), false},
	} {
		if got := Dominates(c.p, c.ref); got != c.want {
			t.Errorf("Dominates(%+v, %+v) = %v, want %v", c.p, c.ref, got, c.want)
		}
	}
}
