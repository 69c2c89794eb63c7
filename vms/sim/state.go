package sim

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/metalbed/metalbed/vms"
)

// File names inside a machine's directory.
const (
	stateFile   = "state.json"
	diskFile    = "disk.img"
	consoleFile = "console.log"
)

// stateVersion is written into every state file; a file from a newer
// metalbed is refused rather than misread.
const stateVersion = 1

// state is what a machine persists in state.json.
type state struct {
	Version   int            `json:"version"`
	Name      string         `json:"name"`
	UUID      string         `json:"uuid"`
	MACs      []string       `json:"macs"`
	DiskBytes int64          `json:"disk_size_bytes"`
	BootMode  vms.BootMode   `json:"boot_mode"`
	Power     vms.PowerState `json:"power"`
	// BootFlags is boot option parameter 5, hex, byte for byte.
	BootFlags string `json:"boot_flags"`
	// LastBoot is what the machine booted last, so a machine that was on
	// when the process stopped resumes the same boot.
	LastBoot *lastBoot `json:"last_boot,omitempty"`
	// Media is what each virtual media drive holds: an image URL.
	Media map[vms.MediaDevice]string `json:"media,omitempty"`
	// HTTPBootURI makes a boot under BootFlags a UEFI HTTP boot of it
	// (SetHTTPBoot); it goes when the flags change or are consumed.
	HTTPBootURI string `json:"http_boot_uri,omitempty"`
}

type lastBoot struct {
	Device   vms.BootDevice `json:"device"`
	Mode     vms.BootMode   `json:"mode"`
	Override bool           `json:"override"`
	// HTTPBootURI is the URI of a UEFI HTTP boot.
	HTTPBootURI string `json:"http_boot_uri,omitempty"`
}

func (s *state) flags() vms.BootFlags {
	var f vms.BootFlags
	b, _ := hex.DecodeString(s.BootFlags) // validated by loadState
	copy(f[:], b)
	return f
}

// setFlags stores parameter 5; an HTTP boot URI set with other flags goes.
func (s *state) setFlags(f vms.BootFlags) {
	if enc := hex.EncodeToString(f[:]); enc != s.BootFlags {
		s.BootFlags, s.HTTPBootURI = enc, ""
	}
}

// loadState reads dir/state.json. It returns (nil, nil) when the file does
// not exist, and an error naming the file when it cannot be trusted.
func loadState(dir string) (*state, error) {
	path := filepath.Join(dir, stateFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read machine state: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var s state
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("machine state %s is corrupt (fix or remove it; the disk is kept): %w", path, err)
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("machine state %s is corrupt (fix or remove it; the disk is kept): %s", path, fmt.Sprintf(format, a...))
	}
	switch {
	case s.Version != stateVersion:
		return nil, bad("version %d, this metalbed reads version %d", s.Version, stateVersion)
	case s.Power != vms.PowerOn && s.Power != vms.PowerOff:
		return nil, bad("power %q", s.Power)
	case s.BootMode != vms.BIOS && s.BootMode != vms.UEFI:
		return nil, bad("boot_mode %q", s.BootMode)
	case s.DiskBytes <= 0:
		return nil, bad("disk_size_bytes %d", s.DiskBytes)
	}
	if fb, err := hex.DecodeString(s.BootFlags); err != nil || len(fb) != len(vms.BootFlags{}) {
		return nil, bad("boot_flags %q is not 5 bytes of hex", s.BootFlags)
	}
	if _, err := parseUUID(s.UUID); err != nil {
		return nil, bad("uuid: %v", err)
	}
	for _, m := range s.MACs {
		if _, err := ParseMAC(m); err != nil {
			return nil, bad("mac: %v", err)
		}
	}
	for dev, url := range s.Media {
		if !mediaDrives[dev] || url == "" {
			return nil, bad("media: drive %q holding %q", dev, url)
		}
	}
	return &s, nil
}

// save writes dir/state.json atomically: a temporary file in the same
// directory, synced, then renamed over the old one.
func (s *state) save(dir string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode machine state: %w", err)
	}
	return writeFileAtomic(filepath.Join(dir, stateFile), append(b, '\n'))
}

// writeFileAtomic replaces path with data so that a reader sees either the
// old or the new content, never a mix.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	err = f.Chmod(0o644)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
