package initiator

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func prefill(b *testing.B, file string, data []byte) {
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, 0); err != nil {
		b.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
}

// reportCPU reports the initiator's CPU per GiB when the target is another process, and
// that process's CPU per GiB.
func reportCPU(b *testing.B, pid int, c0, t0 time.Duration) {
	if pid == 0 {
		return
	}
	gib := float64(b.N) / 2
	b.ReportMetric((cpuTime()-c0).Seconds()/gib, "cpu-s/GiB")
	b.ReportMetric((procCPU(pid)-t0).Seconds()/gib, "target-cpu-s/GiB")
}

// procCPU is the user+system CPU of process pid from /proc (0 when pid is 0 or unreadable).
func procCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// startMetalbedProcess builds cmd/metalbed and runs `metalbed target serve` in its own
// process, so that it does not share this process's CPU; ok is false when it cannot.
func startMetalbedProcess(b *testing.B, size int64) (addr, iqn, file string, pid int, ok bool) {
	dir := b.TempDir()
	bin := filepath.Join(dir, "metalbed")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/metalbed/metalbed/cmd/metalbed").CombinedOutput(); err != nil {
		b.Logf("metalbed-process skipped: go build: %v: %s", err, out)
		return "", "", "", 0, false
	}
	file = filepath.Join(dir, "disk.img")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.Truncate(file, size); err != nil {
		b.Fatal(err)
	}
	addr = fmt.Sprintf("127.0.0.1:%d", freePort(b))
	iqn = "iqn.2024-01.io.metalbed.bench:process"
	cmd := exec.Command(bin, "target", "serve", "--disk", file, "--iqn", iqn, "--addr", addr)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	b.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second): // bounded wait for a clean exit, then kill
			cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr, iqn, file, cmd.Process.Pid, true
		}
		if time.Now().After(deadline) {
			b.Fatalf("metalbed target serve on %s did not start", addr)
		}
		select {
		case <-exited:
			b.Fatal("metalbed target serve exited")
		case <-tick.C:
		}
	}
}

// benchSize is what each benchmark iteration moves: the 512 MiB.
const benchSize = 512 << 20

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkInitiator writes and reads the same 512 MiB through our initiator against tgtd
// and against metalbed's target, and through libiscsi (qemu-img convert) against both as
// the reference initiator. metalbed's target runs twice: as `metalbed target serve` in its
// own process (like tgtd) and inside this process. MB/s is the figure; when the target is
// another process, cpu-s/GiB is the CPU this process (our initiator) used per GiB moved and
// target-cpu-s/GiB the target's; for qemu-img cpu-s/GiB is the qemu-img process's. Neither side flushes the target's cache in the timed loop.
//
//	go test -run XXX -bench Initiator -benchtime 3x ./iscsitarget/initiator/
func BenchmarkInitiator(b *testing.B) {
	data := randomBytes(42, benchSize)
	src := filepath.Join(b.TempDir(), "src.img")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		b.Fatal(err)
	}
	for _, peer := range []string{"tgtd", "metalbed-process", "metalbed-inprocess"} {
		var addr, iqn, file string
		pid := 0 // the target's process when it is not this one
		switch peer {
		case "tgtd":
			d := startTGTD(b, benchSize)
			addr, iqn, file, pid = d.addr, d.iqn, d.file, d.pid
		case "metalbed-process":
			var ok bool
			if addr, iqn, file, pid, ok = startMetalbedProcess(b, benchSize); !ok {
				continue
			}
		case "metalbed-inprocess":
			m := startMetalbed(b, benchSize, nil)
			addr, iqn, file = m.addr, m.iqn, m.file
		}
		// Allocate and flush the backing file first, so that whichever initiator runs
		// first does not pay for the file system's block allocation.
		prefill(b, file, data)
		s, err := Dial(context.Background(), Config{Addr: addr, TargetIQN: iqn})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(peer+"/write", func(b *testing.B) {
			b.SetBytes(benchSize)
			c0, t0 := cpuTime(), procCPU(pid)
			for b.Loop() {
				writeAll(b, s, data, 16<<20)
			}
			reportCPU(b, pid, c0, t0)
		})
		b.Run(peer+"/writer-iocopy", func(b *testing.B) {
			// io.Copy from a plain io.Reader (32 KiB reads) through Session.NewWriter.
			b.SetBytes(benchSize)
			c0, t0 := cpuTime(), procCPU(pid)
			for b.Loop() {
				w := s.NewWriter(context.Background(), 0)
				if _, err := io.Copy(w, onlyReader{bytes.NewReader(data)}); err != nil {
					b.Fatal(err)
				}
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, pid, c0, t0)
		})
		if peer == "tgtd" {
			b.Run(peer+"/offsetwriter-iocopy", func(b *testing.B) {
				// The same through io.NewOffsetWriter: one 32 KiB command at a time.
				b.SetBytes(benchSize)
				for b.Loop() {
					if _, err := io.Copy(io.NewOffsetWriter(s, 0), onlyReader{bytes.NewReader(data)}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		b.Run(peer+"/read", func(b *testing.B) {
			b.SetBytes(benchSize)
			buf := make([]byte, 16<<20)
			c0, t0 := cpuTime(), procCPU(pid)
			for b.Loop() {
				for off := int64(0); off < benchSize; off += int64(len(buf)) {
					if _, err := s.ReadAt(buf, off); err != nil {
						b.Fatal(err)
					}
				}
			}
			reportCPU(b, pid, c0, t0)
		})
		s.Close()
		qemu, err := exec.LookPath("qemu-img")
		if err != nil {
			continue
		}
		url := fmt.Sprintf("iscsi://%s/%s/1", addr, iqn)
		out := filepath.Join(b.TempDir(), "out.img")
		for _, dir := range []string{"write", "read"} {
			b.Run(peer+"/libiscsi-"+dir, func(b *testing.B) {
				b.SetBytes(benchSize)
				var cpu time.Duration
				t0 := procCPU(pid)
				for b.Loop() {
					args := []string{"convert", "-n", "-f", "raw", "-O", "raw", src, url}
					if dir == "read" {
						args = []string{"convert", "-f", "raw", "-O", "raw", url, out}
					}
					cmd := exec.Command(qemu, args...)
					if o, err := cmd.CombinedOutput(); err != nil {
						b.Fatalf("qemu-img %v: %v: %s", args, err, o)
					}
					cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
				}
				b.ReportMetric(cpu.Seconds()/float64(b.N)*2, "cpu-s/GiB")
				if pid != 0 {
					b.ReportMetric((procCPU(pid)-t0).Seconds()/float64(b.N)*2, "target-cpu-s/GiB")
				}
			})
		}
	}
}
