package timer

import "time"

// Clock tells the time and waits. The system clock serves brokers; tests drive a fake one so
// that what fires when is decided by the test, not by the machine's load.
type Clock interface {
	Now() time.Time
	// TimerAt returns a timer that sends on its channel once the clock reads at or later.
	// A deadline, not a duration, so the caller's notion of now cannot be stale.
	TimerAt(at time.Time) Timer
}

// Timer is a stoppable wait started by Clock.TimerAt.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
}

type systemClock struct{}

func (systemClock) Now() time.Time             { return time.Now() }
func (systemClock) TimerAt(at time.Time) Timer { return sysTimer{time.NewTimer(time.Until(at))} }

type sysTimer struct{ t *time.Timer }

func (t sysTimer) C() <-chan time.Time { return t.t.C }
func (t sysTimer) Stop() bool          { return t.t.Stop() }
