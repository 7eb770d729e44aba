package doctor

import "golang.org/x/sys/unix"

// kernelClockSynced reads the kernel's NTP state (adjtimex): a clock that
// no daemon disciplines carries STA_UNSYNC.
func kernelClockSynced() (bool, error) {
	var tx unix.Timex
	state, err := unix.Adjtimex(&tx)
	if err != nil {
		return false, err
	}
	return state != unix.TIME_ERROR && tx.Status&unix.STA_UNSYNC == 0, nil
}
