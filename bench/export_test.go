package bench

// SetFioJobSize shrinks the fio comparison's job so tests run it in seconds.
func SetFioJobSize(o *DiskOptions, size int64) { o.fioSize = size }
