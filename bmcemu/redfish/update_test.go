package redfish

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/testenv"
)

// imageServer serves firmware images by path; other paths are 404. It
// counts the requests of each path.
func imageServer(t *testing.T, files map[string]string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// simpleUpdate posts a SimpleUpdate and returns its task monitor.
func (b *bed) simpleUpdate(t *testing.T, body map[string]any) string {
	t.Helper()
	st, hdr, resp := b.do(t, "POST", simpleUpdatePath, "basic", body)
	if st != http.StatusAccepted {
		t.Fatalf("SimpleUpdate %v: %d %v", body, st, resp)
	}
	loc := hdr.Get("Location")
	if !strings.HasPrefix(loc, monitorsPath+"/") {
		t.Fatalf("SimpleUpdate: Location %q, want a task monitor", loc)
	}
	return loc
}

// waitMonitor polls monitor until it stops answering 202 and returns its
// final answer. Each poll moves the service's clock by tick, so that a
// BMC reboot (measured on that clock) ends.
func (b *bed) waitMonitor(t *testing.T, monitor string, tick time.Duration) (int, map[string]any) {
	t.Helper()
	var st int
	var body map[string]any
	testenv.Eventually(t, 10*time.Second, func() bool {
		b.clock.Advance(tick)
		st, _, body = b.do(t, "GET", monitor, "basic", nil)
		return st != http.StatusAccepted
	}, "task monitor %s to finish", monitor)
	return st, body
}

// taskOf reads the Task resource a monitor belongs to.
func (b *bed) taskOf(t *testing.T, monitor string) map[string]any {
	t.Helper()
	st, _, task := b.do(t, "GET", tasksPath+"/"+strings.TrimPrefix(monitor, monitorsPath+"/"), "basic", nil)
	if st != http.StatusOK {
		t.Fatalf("task of %s: %d %v", monitor, st, task)
	}
	return task
}

func (b *bed) versions(t *testing.T, i int) (bmc, bios string) {
	t.Helper()
	st, _, mgr := b.do(t, "GET", "/redfish/v1/Managers/"+b.machines[i].hw.UUID, "basic", nil)
	if st != http.StatusOK {
		t.Fatalf("manager: %d %v", st, mgr)
	}
	st, _, sys := b.do(t, "GET", b.sysPath(i), "basic", nil)
	if st != http.StatusOK {
		t.Fatalf("system: %d %v", st, sys)
	}
	bmc, _ = mgr["FirmwareVersion"].(string)
	bios, _ = sys["BiosVersion"].(string)
	return bmc, bios
}

// inventory returns the Version of every FirmwareInventory entry by Id.
func (b *bed) inventory(t *testing.T) map[string]string {
	t.Helper()
	st, _, coll := b.do(t, "GET", inventoryPath, "basic", nil)
	if st != http.StatusOK {
		t.Fatalf("FirmwareInventory: %d %v", st, coll)
	}
	out := map[string]string{}
	members, _ := coll["Members"].([]any)
	for _, m := range members {
		p, _ := get(m.(map[string]any), "@odata.id").(string)
		st, _, e := b.do(t, "GET", p, "basic", nil)
		if st != http.StatusOK {
			t.Fatalf("%s: %d %v", p, st, e)
		}
		out[e["Id"].(string)], _ = e["Version"].(string)
	}
	return out
}

// TestUpdateServiceResources: the service root links TaskService (as
// Tasks) and UpdateService; the UpdateService offers SimpleUpdate over
// HTTP and HTTPS; the FirmwareInventory holds a BMC and a BIOS entry per
// system the account manages, whose Versions are what the Manager and the
// System show.
func TestUpdateServiceResources(t *testing.T) {
	b := startBed(t, bedOptions{plain: true, machines: 2, otherAccount: true})
	_, _, root := b.do(t, "GET", "/redfish/v1/", "", nil)
	if get(root, "Tasks", "@odata.id") != taskServicePath || get(root, "UpdateService", "@odata.id") != updateServicePath {
		t.Errorf("service root links: Tasks %v, UpdateService %v", get(root, "Tasks"), get(root, "UpdateService"))
	}
	st, hdr, ts := b.do(t, "GET", taskServicePath, "basic", nil)
	if st != 200 || ts["ServiceEnabled"] != true || get(ts, "Tasks", "@odata.id") != tasksPath || hdr.Get("ETag") == "" ||
		!strings.HasPrefix(ts["@odata.type"].(string), "#TaskService.v1_1_") {
		t.Errorf("TaskService: %d %v", st, ts)
	}
	st, _, us := b.do(t, "GET", updateServicePath, "basic", nil)
	if st != 200 || get(us, "Actions", "#UpdateService.SimpleUpdate", "target") != simpleUpdatePath ||
		get(us, "FirmwareInventory", "@odata.id") != inventoryPath || !strings.HasPrefix(us["@odata.type"].(string), "#UpdateService.v1_") {
		t.Errorf("UpdateService: %d %v", st, us)
	}
	inv := b.inventory(t)
	bmc, bios := b.versions(t, 0)
	want := map[string]string{"BMC-" + b.machines[0].hw.UUID: bmc, "BIOS-" + b.machines[0].hw.UUID: bios}
	if fmt.Sprint(inv) != fmt.Sprint(want) || bmc != firmwareVersion || bios != biosVersion {
		t.Errorf("inventory %v, want %v (the other account's machine not listed)", inv, want)
	}
	if st, _, body := b.do(t, "GET", inventoryPath+"/BMC-"+b.machines[1].hw.UUID, "basic", nil); st != 404 {
		t.Errorf("another account's inventory entry: %d %v", st, body)
	}
	st, _, coll := b.do(t, "GET", tasksPath, "basic", nil)
	if st != 200 || coll["Members@odata.count"] != 0.0 {
		t.Errorf("Tasks before any: %d %v", st, coll)
	}
}

// TestSimpleUpdateBMC: SimpleUpdate answers 202 with a task monitor; the
// monitor answers 202 with the Task while it runs; the image is
// downloaded; while the BMC reboots (by the service's clock) the system's
// resources answer 503 with Retry-After and a Redfish error; afterwards
// the monitor answers 200 with the Completed Task and the Manager and the
// inventory show the version from the file name.
func TestSimpleUpdateBMC(t *testing.T) {
	img := imageServer(t, map[string]string{"/fw/bmc-2.20.bin": "firmware bytes"})
	b := startBed(t, bedOptions{plain: true, firmwareReboot: time.Minute})
	monitor := b.simpleUpdate(t, map[string]any{"ImageURI": img.URL + "/fw/bmc-2.20.bin", "TransferProtocol": "HTTP"})

	// The BMC reboots: the clock does not move, so it stays down.
	testenv.Eventually(t, 10*time.Second, func() bool {
		st, _, _ := b.do(t, "GET", b.sysPath(0), "basic", nil)
		return st == http.StatusServiceUnavailable
	}, "the system to answer 503 while its BMC reboots")
	for _, p := range []string{b.sysPath(0), "/redfish/v1/Managers/" + b.machines[0].hw.UUID, "/redfish/v1/Chassis/" + b.machines[0].hw.UUID + "/Power"} {
		st, hdr, body := b.do(t, "GET", p, "basic", nil)
		checkError(t, "during the BMC reboot: "+p, st, http.StatusServiceUnavailable, body)
		if ra, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || ra < 1 {
			t.Errorf("%s: Retry-After %q", p, hdr.Get("Retry-After"))
		}
	}
	st, _, body := b.do(t, "POST", b.sysPath(0)+"/Actions/ComputerSystem.Reset", "basic", map[string]any{"ResetType": "On"})
	checkError(t, "reset during the BMC reboot", st, http.StatusServiceUnavailable, body)
	if st, _, _ := b.do(t, "GET", "/redfish/v1/Systems", "basic", nil); st != 200 {
		t.Errorf("the Systems collection during the reboot: %d", st)
	}
	st, hdr, task := b.do(t, "GET", monitor, "basic", nil)
	if st != http.StatusAccepted || task["TaskState"] != "Running" || hdr.Get("Retry-After") == "" {
		t.Errorf("monitor while rebooting: %d %v", st, task)
	}
	if pc, _ := task["PercentComplete"].(float64); pc <= 0 || pc >= 100 {
		t.Errorf("PercentComplete while rebooting: %v", task["PercentComplete"])
	}
	if st, _, _ := b.do(t, "POST", simpleUpdatePath, "basic", map[string]any{"ImageURI": img.URL + "/fw/bmc-2.20.bin"}); st != http.StatusConflict {
		t.Errorf("a second SimpleUpdate while one runs: %d, want 409", st)
	}

	b.clock.Advance(time.Minute)
	st, final := b.waitMonitor(t, monitor, 0)
	if st != http.StatusOK || final["TaskState"] != "Completed" || final["TaskStatus"] != "OK" || final["PercentComplete"] != 100.0 || final["EndTime"] == nil {
		t.Fatalf("monitor after the update: %d %v", st, final)
	}
	if tk := b.taskOf(t, monitor); tk["TaskState"] != "Completed" || tk["TaskMonitor"] != monitor {
		t.Errorf("Task resource: %v", tk)
	}
	if bmc, bios := b.versions(t, 0); bmc != "2.20" || bios != biosVersion {
		t.Errorf("versions after the update: BMC %q BIOS %q, want 2.20 and %s", bmc, bios, biosVersion)
	}
	if v := b.inventory(t)["BMC-"+b.machines[0].hw.UUID]; v != "2.20" {
		t.Errorf("inventory BMC version %q", v)
	}
	kinds := fmt.Sprint(b.kinds())
	for _, k := range []events.Kind{events.BMCRedfishTask, events.BMCRedfishFirmware} {
		if !strings.Contains(kinds, string(k)) {
			t.Errorf("no %s event: %s", k, kinds)
		}
	}
}

// TestSimpleUpdateBIOSAndVersions: a System target updates the BIOS at
// once (no BMC reboot); the version comes from the file name, else a
// "version=" line in the file, else the current one bumped.
func TestSimpleUpdateBIOSAndVersions(t *testing.T) {
	img := imageServer(t, map[string]string{
		"/bios-1.2.3.bin":  "x",
		"/bios.rom":        "header\nVERSION = 4.5\nmore",
		"/blob":            "no version here",
		"/bmc-firmware.fw": "no version here either",
	})
	b := startBed(t, bedOptions{plain: true, firmwareReboot: time.Millisecond})
	sys := b.sysPath(0)
	for _, c := range []struct {
		image   string
		targets []string
		bmc     string
		bios    string
	}{
		{"/bios-1.2.3.bin", []string{sys}, firmwareVersion, "1.2.3"},
		{"/bios.rom", []string{inventoryPath + "/BIOS-" + b.machines[0].hw.UUID}, firmwareVersion, "4.5"},
		{"/blob", []string{sys}, firmwareVersion, "4.6"},
		{"/bmc-firmware.fw", []string{"/redfish/v1/Managers/" + b.machines[0].hw.Name}, "2.11", "4.6"},
	} {
		monitor := b.simpleUpdate(t, map[string]any{"ImageURI": img.URL + c.image, "Targets": c.targets})
		if st, task := b.waitMonitor(t, monitor, time.Millisecond); st != 200 || task["TaskState"] != "Completed" {
			t.Fatalf("%s: %d %v", c.image, st, task)
		}
		if bmc, bios := b.versions(t, 0); bmc != c.bmc || bios != c.bios {
			t.Errorf("%s to %v: BMC %q BIOS %q, want %q %q", c.image, c.targets, bmc, bios, c.bmc, c.bios)
		}
	}
}

// TestSimpleUpdateFailures: an image answered 404, an unreachable host and
// an image larger than the cap end the task in Exception: the monitor
// answers with a Redfish error, the Task keeps its Exception and says why,
// and the firmware is unchanged. Bad parameters are refused at once.
func TestSimpleUpdateFailures(t *testing.T) {
	img := imageServer(t, nil)
	huge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(maxImage+1))
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(huge.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/bmc-9.9.bin"
	ln.Close()
	b := startBed(t, bedOptions{plain: true, firmwareReboot: time.Millisecond})
	for _, c := range []struct{ uri, why string }{
		{img.URL + "/missing-9.9.bin", "404"},
		{closed, "refused"},
		{huge.URL + "/bmc-9.9.bin", "more than"},
	} {
		monitor := b.simpleUpdate(t, map[string]any{"ImageURI": c.uri})
		st, body := b.waitMonitor(t, monitor, 0)
		if st != http.StatusOK || body["TaskState"] != "Exception" {
			t.Errorf("%s: monitor %d %v, want 200 with the Task in Exception", c.uri, st, body)
		}
		task := b.taskOf(t, monitor)
		msgs := fmt.Sprint(task["Messages"])
		if task["TaskState"] != "Exception" || task["TaskStatus"] != "Critical" || !strings.Contains(msgs, c.why) || !strings.Contains(msgs, "TransferFailed") {
			t.Errorf("%s: task %v, want Exception saying %q", c.uri, task, c.why)
		}
		if bmc, _ := b.versions(t, 0); bmc != firmwareVersion {
			t.Errorf("%s: BMC version %q after a failed update", c.uri, bmc)
		}
	}
	for _, c := range []struct {
		body any
		want int
	}{
		{map[string]any{}, 400},
		{map[string]any{"ImageURI": ""}, 400},
		{map[string]any{"ImageURI": img.URL + "/a.bin", "TransferProtocol": "FTP"}, 400},
		{map[string]any{"ImageURI": "ftp://10.0.0.1/a.bin"}, 400},
		{map[string]any{"ImageURI": "http://"}, 400},
		{map[string]any{"ImageURI": img.URL + "/a.bin", "Targets": []string{"/redfish/v1/Chassis/x"}}, 400},
		{map[string]any{"ImageURI": img.URL + "/a.bin", "Targets": []string{inventoryPath + "/NIC-" + b.machines[0].hw.UUID}}, 400},
		{map[string]any{"ImageURI": img.URL + "/a.bin", "Oops": 1}, 400},
		{`{"ImageURI": `, 400},
	} {
		st, _, body := b.do(t, "POST", simpleUpdatePath, "basic", c.body)
		checkError(t, fmt.Sprintf("SimpleUpdate %v", c.body), st, c.want, body)
	}
	if st, _, _ := b.do(t, "GET", monitorsPath+"/999", "basic", nil); st != 404 {
		t.Errorf("unknown monitor: %d", st)
	}
}

// TestSimpleUpdateTargetsOfAccount: without Targets the update is of the
// one system the account manages; an account of several systems must
// name one; a target of another account's system is refused, and its
// tasks are not seen.
func TestSimpleUpdateTargetsOfAccount(t *testing.T) {
	img := imageServer(t, map[string]string{"/bios-7.0.bin": "x"})
	b := startBed(t, bedOptions{plain: true, machines: 3, otherAccount: true, firmwareReboot: time.Millisecond})
	st, _, body := b.do(t, "POST", simpleUpdatePath, "basic", map[string]any{"ImageURI": img.URL + "/bios-7.0.bin"})
	checkError(t, "no Targets for an account of two systems", st, 400, body)
	st, _, body = b.do(t, "POST", simpleUpdatePath, "basic", map[string]any{"ImageURI": img.URL + "/bios-7.0.bin", "Targets": []string{b.sysPath(2)}})
	checkError(t, "another account's system", st, 400, body)
	st, _, body = b.do(t, "POST", simpleUpdatePath, "basic", map[string]any{"ImageURI": img.URL + "/bios-7.0.bin", "Targets": []string{b.sysPath(0), b.sysPath(1)}})
	checkError(t, "targets on two systems", st, 400, body)
	monitor := b.simpleUpdate(t, map[string]any{"ImageURI": img.URL + "/bios-7.0.bin", "Targets": []string{b.sysPath(1)}})
	b.waitMonitor(t, monitor, 0)
	if _, bios := b.versions(t, 1); bios != "7.0" {
		t.Errorf("BIOS of machine 1: %q", bios)
	}
	if _, bios := b.versions(t, 0); bios != biosVersion {
		t.Errorf("BIOS of machine 0 changed: %q", bios)
	}
	other := func(path string) int {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", b.url+path, nil)
		req.SetBasicAuth("other", "secret")
		resp, err := b.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := other(monitor); st != 404 {
		t.Errorf("another account reads the monitor: %d", st)
	}
	if st := other(b.taskOf(t, monitor)["@odata.id"].(string)); st != 404 {
		t.Errorf("another account reads the task: %d", st)
	}
}

// TestTasksBoundedAndExpire: at most maxTasks are kept (a new one drops
// the oldest finished); a finished task and its monitor expire taskExpiry
// after they ended.
func TestTasksBoundedAndExpire(t *testing.T) {
	img := imageServer(t, map[string]string{"/bios-1.1.bin": "x"})
	b := startBed(t, bedOptions{plain: true, firmwareReboot: time.Millisecond})
	var monitors []string
	for range maxTasks + 2 {
		m := b.simpleUpdate(t, map[string]any{"ImageURI": img.URL + "/bios-1.1.bin", "Targets": []string{b.sysPath(0)}})
		b.waitMonitor(t, m, 0)
		monitors = append(monitors, m)
	}
	_, _, coll := b.do(t, "GET", tasksPath, "basic", nil)
	if coll["Members@odata.count"] != float64(maxTasks) {
		t.Errorf("%v tasks kept, want %d", coll["Members@odata.count"], maxTasks)
	}
	for i, m := range monitors {
		st, _, _ := b.do(t, "GET", m, "basic", nil)
		if want := map[bool]int{true: 404, false: 200}[i < 2]; st != want {
			t.Errorf("monitor %d (%s): %d, want %d", i, m, st, want)
		}
	}
	b.clock.Advance(taskExpiry - time.Second)
	if st, _, _ := b.do(t, "GET", monitors[len(monitors)-1], "basic", nil); st != 200 {
		t.Errorf("a task before its expiry: %d", st)
	}
	b.clock.Advance(2 * time.Second)
	_, _, coll = b.do(t, "GET", tasksPath, "basic", nil)
	if st, _, _ := b.do(t, "GET", monitors[len(monitors)-1], "basic", nil); st != 404 || coll["Members@odata.count"] != 0.0 {
		t.Errorf("after expiry: monitor %d, %v tasks", st, coll["Members@odata.count"])
	}
}

// TestTooManyRunningTasks: when maxTasks are running a new task is
// refused with 503; once one has finished it is accepted.
func TestTooManyRunningTasks(t *testing.T) {
	s, err := New(Config{PlainHTTP: true, Systems: []System{{Machine: newFakeMachine("node-0", 0), Username: testUser, Password: testPass}}})
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free)
	block := func(ctx context.Context, _ taskRun) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}
	var first *task
	for i := range maxTasks {
		tk, err := s.tasks.start(s.systems[0], "Blocked"+strconv.Itoa(i), block)
		if err != nil {
			t.Fatalf("task %d: %v", i, err)
		}
		if first == nil {
			first = tk
		}
	}
	_, err = s.tasks.start(s.systems[0], "OneTooMany", block)
	if ae, ok := err.(*apiError); !ok || ae.status != http.StatusServiceUnavailable {
		t.Fatalf("task %d: %v, want 503", maxTasks+1, err)
	}
	free()
	testenv.Eventually(t, 5*time.Second, func() bool {
		_, done, _ := s.tasks.view(first)
		return done
	}, "the blocked tasks to finish")
	if _, err := s.tasks.start(s.systems[0], "OneTooMany", block); err != nil {
		t.Errorf("a task once others finished: %v", err)
	}
}

func TestNewVersion(t *testing.T) {
	for _, c := range []struct{ uri, head, cur, want string }{
		{"http://h/bmc-2.20.bin", "", "2.10", "2.20"},
		{"http://h/v1.0/fw_3.1.4.img?x=1", "version=9.9", "2.10", "3.1.4"},
		{"http://h/firmware.bin", "junk\n  Version: 5.6.7 \n", "2.10", "5.6.7"},
		{"http://h/firmware.bin", "junk", "2.10", "2.11"},
		{"http://h/firmware.bin", "", "1.0.9", "1.0.10"},
		{"http://h/firmware.bin", "", "beta", "beta.1"},
	} {
		u, err := url.Parse(c.uri)
		if err != nil {
			t.Fatal(err)
		}
		if got := newVersion(u, []byte(c.head), c.cur); got != c.want {
			t.Errorf("newVersion(%s, %q, %s) = %s, want %s", c.uri, c.head, c.cur, got, c.want)
		}
	}
}
