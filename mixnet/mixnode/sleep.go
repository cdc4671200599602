package mixnode

import "time"

// A sleeper is what the delay stage waits on: a deadline, or a wake-up when a
// packet arrives that is due before that deadline. A wake that comes before
// sleep is called is not lost: the next sleep returns at once.
type sleeper interface {
	// sleep returns after d, or at a wake; d < 0 means no deadline.
	sleep(d time.Duration)
	wake()
	close() error
}

// timerSleeper is the portable sleeper, built on a runtime timer. When the
// whole process is idle Go's timers wake up to 1 ms late (the Linux netpoller
// waits in whole milliseconds), which is why Linux uses preciseSleeper.
type timerSleeper struct {
	woken chan struct{} // one pending wake-up at most
	timer *time.Timer
}

func newTimerSleeper() *timerSleeper {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &timerSleeper{woken: make(chan struct{}, 1), timer: t}
}

func (s *timerSleeper) sleep(d time.Duration) {
	if d < 0 {
		<-s.woken
		return
	}
	s.timer.Reset(d)
	select {
	case <-s.woken:
		s.timer.Stop()
	case <-s.timer.C:
	}
}

func (s *timerSleeper) wake() {
	select {
	case s.woken <- struct{}{}:
	default:
	}
}

func (s *timerSleeper) close() error {
	s.timer.Stop()
	return nil
}
