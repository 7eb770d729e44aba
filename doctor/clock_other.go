//go:build !linux

package doctor

import "errors"

var errNoClock = errors.New("not supported here")

func kernelClockSynced() (bool, error) { return false, errNoClock }
