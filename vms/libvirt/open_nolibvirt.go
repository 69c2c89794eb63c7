//go:build !libvirt_dlopen

package libvirt

import "github.com/metalbed/metalbed/vms"

// Open returns ErrNotBuilt: this build has no libvirt binding.
func Open(cfg Config) (vms.Machine, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	return nil, ErrNotBuilt
}

// Built reports whether this binary can drive libvirt: ErrNotBuilt here.
func Built() error { return ErrNotBuilt }
