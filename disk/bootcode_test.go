package disk

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/metalbed/metalbed/internal/testenv"
)

// TestBIOSBootCodeDisassembles checks the hand-assembled MBR code with
// objdump (binutils): the instructions are the ones documented, the jumps
// land where intended, and SI points at the message.
func TestBIOSBootCodeDisassembles(t *testing.T) {
	objdump := testenv.RequireTool(t, "objdump", "binutils")
	code := biosBootCode()
	if len(code) > mbrBootCodeSize {
		t.Fatalf("boot code is %d bytes, the MBR holds %d", len(code), mbrBootCodeSize)
	}
	p := filepath.Join(t.TempDir(), "mbr.bin")
	if err := os.WriteFile(p, code[:0x1f], 0o644); err != nil {
		t.Fatal(err)
	}
	out := run(t, objdump, "-D", "-b", "binary", "-m", "i8086", p)
	var got []string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Split(l, "\t")
		if len(f) == 3 {
			got = append(got, strings.Join(strings.Fields(f[2]), " "))
		}
	}
	want := []string{
		"cli", "xor %ax,%ax", "mov %ax,%ds", "mov %ax,%ss", "mov $0x7c00,%sp", "sti",
		"mov $0x7c1f,%si", "lods %ds:(%si),%al", "test %al,%al", "je 0x1c", "mov $0xe,%ah",
		"mov $0x7,%bx", "int $0x10", "jmp 0xe", "hlt", "jmp 0x1c",
	}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Fatalf("disassembly:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if msg := string(code[0x1f:]); !strings.HasPrefix(msg, "metalbed: ") || !strings.HasSuffix(msg, "\x00") {
		t.Fatalf("message at 0x7c1f: %q", msg)
	}
}
