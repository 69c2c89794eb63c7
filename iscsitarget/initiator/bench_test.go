package initiator

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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

// benchSize is what each benchmark iteration moves: the 512 MiB.
const benchSize = 512 << 20

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkInitiator writes and reads the same 512 MiB through our initiator against tgtd
// and against metalbed's target, and through libiscsi (qemu-img convert) against both as
// the reference initiator. MB/s is the figure; for tgtd (another process), cpu-s/GiB is
// the CPU this process (our initiator) used per GiB moved, and for qemu-img the CPU of
// the qemu-img process. Neither side flushes the target's cache in the timed loop.
//
//	go test -run XXX -bench Initiator -benchtime 3x ./iscsitarget/initiator/
func BenchmarkInitiator(b *testing.B) {
	data := randomBytes(42, benchSize)
	src := filepath.Join(b.TempDir(), "src.img")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		b.Fatal(err)
	}
	for _, peer := range []string{"tgtd", "metalbed"} {
		var addr, iqn, file string
		switch peer {
		case "tgtd":
			d := startTGTD(b, benchSize)
			addr, iqn, file = d.addr, d.iqn, d.file
		case "metalbed":
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
			c0 := cpuTime()
			for b.Loop() {
				writeAll(b, s, data, 16<<20)
			}
			if peer == "tgtd" {
				b.ReportMetric((cpuTime()-c0).Seconds()/float64(b.N)*2, "cpu-s/GiB")
			}
		})
		b.Run(peer+"/read", func(b *testing.B) {
			b.SetBytes(benchSize)
			buf := make([]byte, 16<<20)
			c0 := cpuTime()
			for b.Loop() {
				for off := int64(0); off < benchSize; off += int64(len(buf)) {
					if _, err := s.ReadAt(buf, off); err != nil {
						b.Fatal(err)
					}
				}
			}
			if peer == "tgtd" {
				b.ReportMetric((cpuTime()-c0).Seconds()/float64(b.N)*2, "cpu-s/GiB")
			}
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
			})
		}
	}
}
