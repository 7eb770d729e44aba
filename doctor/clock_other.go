//go:build !linux

package doctor

func kernelClockSynced() (bool, error) { return false, errNoClock }
