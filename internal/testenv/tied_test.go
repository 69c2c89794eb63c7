package testenv

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// endThreads runs n goroutines that lock their thread and return, so the
// runtime ends those threads, as the network-namespace dialers do.
func endThreads(n int) {
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			runtime.LockOSThread()
			time.Sleep(time.Millisecond)
		})
	}
	wg.Wait()
}

// TestStartTiedSurvivesEndedThreads: children started with StartTied live
// on while the test process ends threads by the hundred; children forked
// plainly, each from a thread that then ends, all get their Pdeathsig (the
// kernel's, which follows the forking thread: what StartTied avoids).
func TestStartTiedSurvivesEndedThreads(t *testing.T) {
	if _, err := exec.LookPath("sleep"); err != nil {
		t.Skip("no sleep(1)")
	}
	const n = 16
	start := func(tied bool) []*exec.Cmd {
		var cmds []*exec.Cmd
		for range n {
			cmd := exec.Command("sleep", "60")
			var err error
			if tied {
				err = StartTied(cmd, syscall.SIGTERM)
			} else {
				cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
				// Fork from threads about to end.
				done := make(chan error)
				go func() {
					runtime.LockOSThread()
					done <- cmd.Start()
				}()
				err = <-done
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			cmds = append(cmds, cmd)
		}
		return cmds
	}
	tied, plain := start(true), start(false)
	endThreads(200)
	time.Sleep(200 * time.Millisecond)
	killed := func(cmds []*exec.Cmd) int {
		k := 0
		for _, c := range cmds {
			if c.Process.Signal(syscall.Signal(0)) != nil {
				k++
				continue
			}
			// A zombie answers signal 0: ask whether it has exited.
			var ws syscall.WaitStatus
			if pid, _ := syscall.Wait4(c.Process.Pid, &ws, syscall.WNOHANG, nil); pid == c.Process.Pid {
				k++
			}
		}
		return k
	}
	if k := killed(tied); k != 0 {
		t.Errorf("%d of %d children started with StartTied were killed", k, n)
	}
	if k := killed(plain); k != n {
		t.Errorf("%d of %d children forked plainly from threads that ended were killed, want all (the test shows nothing)", k, n)
	}
}
