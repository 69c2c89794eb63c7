package cli

import "testing"

// FuzzTopology: any topology file gives a plan or a usage error, never a
// panic.
func FuzzTopology(f *testing.F) {
	f.Add([]byte("nodes: 3\nbmc_base_port: 6230\ndefaults:\n  disk_size: 1GiB\nmachines:\n  - name: a\n    macs: [\"52:54:00:00:00:01\"]\n    bmc: {port: 7000}\n"))
	f.Add([]byte("machines:\n  - name: a\n  - name: a\n"))
	f.Add([]byte("defaults: {power_delay: 2s, nics: 40}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		topo, err := parseTopology("fuzz.yaml", b)
		if err != nil {
			if ExitCode(err) != 2 {
				t.Errorf("topology error is not a usage error: %v", err)
			}
			return
		}
		st, _, err := resolveUp(map[string]bool{}, topo, testFlags())
		if err != nil {
			return
		}
		if st.nodes > 5000 {
			return // a plan that large is valid, just slow to fuzz
		}
		plan(st, topo)
	})
}
