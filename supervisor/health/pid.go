package health

import "os"

func processID() int { return os.Getpid() }
