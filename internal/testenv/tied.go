package testenv

import (
	"os/exec"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// StartTied starts cmd so that the kernel sends it sig when the test
// process dies (a -timeout, SIGPIPE on a closed stdout) and not before.
// Linux sends a child its Pdeathsig when the thread that forked it exits,
// not the process, and Go ends threads: a goroutine that locked its thread
// and returned (the network-namespace dialers do, on purpose) takes it
// along, and a child forked from that thread earlier got SIGTERM in the
// middle of a test. So the fork runs on a locked thread that is kept until
// the child exits. The caller waits for cmd as usual.
func StartTied(cmd *exec.Cmd, sig syscall.Signal) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = sig
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		// Wait for the exit without reaping it: cmd.Wait is the caller's.
		var info unix.Siginfo
		for {
			err := unix.Waitid(unix.P_PID, cmd.Process.Pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
			if err != unix.EINTR {
				return
			}
		}
	}()
	return <-started
}
