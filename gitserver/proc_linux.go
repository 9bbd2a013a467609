package gitserver

import (
	"os"
	"syscall"
)

// packNice is how much nicer than fjord itself the git processes that make
// packs for readers (upload-pack and the pack-objects it starts,
// upload-archive) run. When clones keep the CPUs busy, the scheduler then
// gives fjord's own threads (the SSH transport, the "anything new?"
// answers from the snapshot) about nine times the share of each git, so a
// cheap question is not queued behind pack compression; on an idle machine
// it changes nothing. Pushes (receive-pack) keep fjord's priority.
const packNice = 10

// deprioritize lowers the CPU priority of a started git by packNice. It is
// set just after the start: git upload-pack starts pack-objects only once
// the client's wants are read, so the children inherit it. A failure
// (a sandbox refusing setpriority) leaves git at fjord's priority.
func deprioritize(p *os.Process) {
	// getpriority(2) returns 20 - nice.
	raw, err := syscall.Getpriority(syscall.PRIO_PROCESS, 0)
	if err != nil {
		return
	}
	syscall.Setpriority(syscall.PRIO_PROCESS, p.Pid, min(19, 20-raw+packNice))
}
