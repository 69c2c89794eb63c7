package redfish

// The UpdateService (UpdateService.v1_8_0) and its FirmwareInventory: each
// system has a BMC and a BIOS SoftwareInventory entry, whose Versions are
// what its Manager's FirmwareVersion and its BiosVersion show.
//
// #UpdateService.SimpleUpdate runs as a task (see tasks.go):
//
//  1. It downloads ImageURI over HTTP or HTTPS, the real file, at most
//     maxImage bytes. A status other than 200, an unreachable host or a
//     larger file ends the task in Exception with the reason, as a real
//     BMC's task does.
//  2. It derives the new version: the last dotted number ("2.20",
//     "1.4.7") in the file name of ImageURI; else a line "version=X" (or
//     "version: X", any case) in the first 64 KiB of the file; else the
//     current version with its last number bumped ("2.10" → "2.11").
//  3. A BIOS target takes the version at once. A BMC target reboots the
//     BMC: for Config.FirmwareReboot (by Config.Now's clock) every request
//     to that system's resources (System, Manager, Chassis and below)
//     answers 503 with Retry-After; then the new version shows and the
//     task is Completed.
//
// Targets name inventory entries, a Manager (its BMC) or a System (its
// BIOS), all of one system; none means the BMC of the one system the
// account manages (what Ironic sends).

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/metalbed/metalbed/internal/events"
)

const (
	updateServicePath = "/redfish/v1/UpdateService"
	inventoryPath     = updateServicePath + "/FirmwareInventory"
	simpleUpdatePath  = updateServicePath + "/Actions/UpdateService.SimpleUpdate"
	// maxImage caps the size of a firmware image.
	maxImage = 64 << 20
	// versionWindow is how much of an image is searched for a version.
	versionWindow = 64 << 10
	// imageTimeout bounds an image download.
	imageTimeout = 5 * time.Minute
	// defaultFirmwareReboot is Config.FirmwareReboot's default.
	defaultFirmwareReboot = 5 * time.Second
	// Inventory Id prefixes: "BMC-<system id>", "BIOS-<system id>".
	componentBMC  = "BMC"
	componentBIOS = "BIOS"
)

var (
	dottedVersion  = regexp.MustCompile(`[0-9]+(?:\.[0-9]+)+`)
	contentVersion = regexp.MustCompile(`(?im)^\s*version\s*[=:]\s*([0-9]+(?:\.[0-9]+)*)\s*$`)
)

// firmware is one system's firmware versions and BMC reboot. The zero
// value is the factory state.
type firmware struct {
	mu        sync.Mutex
	bmc, bios string // "" => firmwareVersion, biosVersion
	rebooting bool   // the BMC is rebooting into a new image
}

// versions returns the BMC's and the BIOS's versions.
func (f *firmware) versions() (bmc, bios string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	bmc, bios = f.bmc, f.bios
	if bmc == "" {
		bmc = firmwareVersion
	}
	if bios == "" {
		bios = biosVersion
	}
	return bmc, bios
}

func (f *firmware) isRebooting() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rebooting
}

// errRebooting answers a request to a system whose BMC is rebooting.
func errRebooting(retry time.Duration) *apiError {
	return &apiError{http.StatusServiceUnavailable, "ServiceTemporarilyUnavailable",
		fmt.Sprintf("The service is temporarily unavailable: the BMC is rebooting into new firmware. Retry in %d seconds.", retrySeconds(retry))}
}

func retrySeconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}

// unavailable answers 503 (with Retry-After) for a request to the
// resources of a system whose BMC is rebooting.
func (s *Server) unavailable(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("sys")
	if id == "" {
		return nil
	}
	sys, ok := s.byID[strings.ToLower(id)]
	if !ok {
		sys, ok = s.byID[id]
	}
	if !ok || !sys.fw.isRebooting() {
		return nil
	}
	w.Header().Set("Retry-After", strconv.Itoa(retrySeconds(s.cfg.FirmwareReboot)))
	return errRebooting(s.cfg.FirmwareReboot)
}

// updateService is the UpdateService resource.
type updateService struct {
	resource
	ServiceEnabled    bool                 `json:"ServiceEnabled"`
	Status            *status              `json:"Status"`
	FirmwareInventory odataID              `json:"FirmwareInventory"`
	Actions           updateServiceActions `json:"Actions"`
}

type updateServiceActions struct {
	SimpleUpdate simpleUpdateAction `json:"#UpdateService.SimpleUpdate"`
}

type simpleUpdateAction struct {
	Target    string   `json:"target"`
	Protocols []string `json:"TransferProtocol@Redfish.AllowableValues"`
}

// softwareInventory is a SoftwareInventory entry.
type softwareInventory struct {
	resource
	Version      string    `json:"Version"`
	SoftwareID   string    `json:"SoftwareId"`
	Manufacturer string    `json:"Manufacturer"`
	Updateable   bool      `json:"Updateable"`
	Status       *status   `json:"Status"`
	RelatedItem  []odataID `json:"RelatedItem"`
}

// simpleUpdateRequest is the body of #UpdateService.SimpleUpdate.
type simpleUpdateRequest struct {
	ImageURI         *string  `json:"ImageURI"`
	TransferProtocol *string  `json:"TransferProtocol"`
	Targets          []string `json:"Targets"`
	Username         *string  `json:"Username"`
	Password         *string  `json:"Password"`
}

// transferProtocols are the TransferProtocol values SimpleUpdate takes.
var transferProtocols = []string{"HTTP", "HTTPS"}

func (s *Server) getUpdateService(q *request) error {
	return q.ok(updateService{
		resource:          resource{ODataID: updateServicePath, ODataType: "#UpdateService.v1_8_0.UpdateService", ID: "UpdateService", Name: "Update Service"},
		ServiceEnabled:    true,
		Status:            enabledOK,
		FirmwareInventory: odataID{inventoryPath},
		Actions: updateServiceActions{SimpleUpdate: simpleUpdateAction{
			Target: simpleUpdatePath, Protocols: transferProtocols,
		}},
	})
}

func inventoryID(component string, sys *system) string { return component + "-" + sys.id }

func (s *Server) getFirmwareInventory(q *request) error {
	var members []string
	for _, sys := range s.systems {
		if sys.visibleTo(q.who) {
			members = append(members, inventoryPath+"/"+inventoryID(componentBMC, sys), inventoryPath+"/"+inventoryID(componentBIOS, sys))
		}
	}
	return q.ok(newCollection(inventoryPath, "#SoftwareInventoryCollection.SoftwareInventoryCollection", "Firmware Inventory Collection", members))
}

func (s *Server) getFirmware(q *request) error {
	component, id, _ := strings.Cut(q.r.PathValue("fw"), "-")
	sys, ok := s.byID[strings.ToLower(id)]
	if !ok || !sys.visibleTo(q.who) || (component != componentBMC && component != componentBIOS) {
		return errNotFound(q.r.URL.Path)
	}
	if sys.fw.isRebooting() {
		q.w.Header().Set("Retry-After", strconv.Itoa(retrySeconds(s.cfg.FirmwareReboot)))
		return errRebooting(s.cfg.FirmwareReboot)
	}
	bmc, bios := sys.fw.versions()
	v := softwareInventory{
		resource:     resource{ODataID: inventoryPath + "/" + inventoryID(component, sys), ODataType: "#SoftwareInventory.v1_3_0.SoftwareInventory", ID: inventoryID(component, sys)},
		Manufacturer: "metalbed",
		Updateable:   true,
		Status:       enabledOK,
	}
	if component == componentBMC {
		v.Name, v.Version, v.SoftwareID = "BMC firmware of "+sys.hw.Name, bmc, "metalbed-bmc"
		v.RelatedItem = []odataID{{sys.managerPath()}}
	} else {
		v.Name, v.Version, v.SoftwareID = "BIOS of "+sys.hw.Name, bios, "metalbed-bios"
		v.RelatedItem = []odataID{{sys.path()}}
	}
	return q.ok(v)
}

// errActionParam is a SimpleUpdate parameter refused.
func errActionParam(id, msg string) *apiError {
	return &apiError{http.StatusBadRequest, id, msg}
}

// postSimpleUpdate starts a SimpleUpdate task and answers 202 with its
// monitor.
func (s *Server) postSimpleUpdate(q *request) error {
	var req simpleUpdateRequest
	if err := decodeBody(q.r.Body, &req, false); err != nil {
		return err
	}
	if req.ImageURI == nil || *req.ImageURI == "" {
		return errActionParam("ActionParameterMissing", "The action UpdateService.SimpleUpdate requires the parameter ImageURI to be present in the request body.")
	}
	image, err := imageURL(*req.ImageURI, req.TransferProtocol)
	if err != nil {
		return err
	}
	sys, bmc, bios, err := s.updateTargets(q, req.Targets)
	if err != nil {
		return err
	}
	u := update{srv: s, sys: sys, image: image, bmc: bmc, bios: bios}
	if req.Username != nil && req.Password != nil {
		u.user, u.pass = *req.Username, *req.Password
	}
	t, err := s.tasks.start(sys, "SimpleUpdate", u.run)
	if err != nil {
		if ae, ok := err.(*apiError); ok && ae.status == http.StatusServiceUnavailable {
			q.w.Header().Set("Retry-After", strconv.Itoa(taskRetryAfter))
		}
		return err
	}
	sys.log().Info("firmware update started", "event", "SimpleUpdate", "image", image.Redacted())
	return q.accepted(t)
}

// imageURL resolves ImageURI with TransferProtocol: a URI's own scheme
// wins; a URI without one takes the protocol (default HTTP).
func imageURL(uri string, protocol *string) (*url.URL, error) {
	proto := "HTTP"
	if protocol != nil {
		proto = *protocol
		if proto != "HTTP" && proto != "HTTPS" {
			return nil, errActionParam("ActionParameterNotSupported", fmt.Sprintf("The parameter TransferProtocol value %q for the action UpdateService.SimpleUpdate is not supported on the target resource (HTTP, HTTPS).", proto))
		}
	}
	if !strings.Contains(uri, "://") {
		uri = strings.ToLower(proto) + "://" + uri
	}
	u, err := url.Parse(uri)
	if err != nil || u.Host == "" {
		return nil, errActionParam("ActionParameterValueFormatError", fmt.Sprintf("The value %q for the parameter ImageURI in the action UpdateService.SimpleUpdate is of a different format than the parameter can accept.", uri))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, errActionParam("ActionParameterNotSupported", fmt.Sprintf("The parameter ImageURI scheme %q for the action UpdateService.SimpleUpdate is not supported on the target resource (http, https).", u.Scheme))
	}
	return u, nil
}

// updateTargets resolves Targets to one system and its components.
func (s *Server) updateTargets(q *request, targets []string) (sys *system, bmc, bios bool, err error) {
	if len(targets) == 0 {
		var mine []*system
		for _, x := range s.systems {
			if x.visibleTo(q.who) {
				mine = append(mine, x)
			}
		}
		if len(mine) != 1 {
			return nil, false, false, errActionParam("ActionParameterMissing", "The action UpdateService.SimpleUpdate requires the parameter Targets to be present in the request body: this account manages several systems.")
		}
		return mine[0], true, false, nil
	}
	for _, tg := range targets {
		x, component, ok := s.target(q, tg)
		if !ok || (sys != nil && x != sys) {
			return nil, false, false, errActionParam("ActionParameterValueFormatError", fmt.Sprintf("The value %q for the parameter Targets in the action UpdateService.SimpleUpdate is not a FirmwareInventory entry, Manager or System of one system this account manages.", tg))
		}
		sys = x
		bmc = bmc || component == componentBMC
		bios = bios || component == componentBIOS
	}
	return sys, bmc, bios, nil
}

// target resolves one target URI.
func (s *Server) target(q *request, uri string) (*system, string, bool) {
	uri = strings.TrimSuffix(uri, "/")
	dir, last := path.Split(uri)
	var component, id string
	switch strings.TrimSuffix(dir, "/") {
	case inventoryPath:
		component, id, _ = strings.Cut(last, "-")
	case "/redfish/v1/Managers":
		component, id = componentBMC, last
	case "/redfish/v1/Systems":
		component, id = componentBIOS, last
	default:
		return nil, "", false
	}
	sys, ok := s.byID[strings.ToLower(id)]
	if !ok {
		sys, ok = s.byID[id]
	}
	if !ok || !sys.visibleTo(q.who) || (component != componentBMC && component != componentBIOS) {
		return nil, "", false
	}
	return sys, component, true
}

// update is one SimpleUpdate being carried out.
type update struct {
	srv        *Server
	sys        *system
	image      *url.URL
	user, pass string
	bmc, bios  bool
}

func updateMessage(id, msg, severity string) *message {
	return &message{ODataType: messageType, MessageID: "Update.1.0." + id, Message: msg, Severity: severity}
}

// run is the task's work: download, derive the version, apply.
func (u update) run(ctx context.Context, r taskRun) error {
	r.progress(10, updateMessage("TransferringToComponent", fmt.Sprintf("Image '%s' is being transferred to '%s'.", u.image.Redacted(), u.sys.hw.Name), "OK"))
	head, err := u.download(ctx)
	if err != nil {
		r.progress(10, updateMessage("TransferFailed", fmt.Sprintf("Transfer of image '%s' to '%s' failed: %v.", u.image.Redacted(), u.sys.hw.Name, err), "Critical"))
		return &apiError{http.StatusBadRequest, "GeneralError", fmt.Sprintf("Transfer of image '%s' failed: %v.", u.image.Redacted(), err)}
	}
	bmc, bios := u.sys.fw.versions()
	cur := bmc
	if !u.bmc {
		cur = bios
	}
	version := newVersion(u.image, head, cur)
	r.progress(50, updateMessage("ApplyingOnComponent", fmt.Sprintf("Image '%s' (version %s) is being applied on '%s'.", path.Base(u.image.Path), version, u.sys.hw.Name), "OK"))
	if u.bios {
		u.sys.fw.mu.Lock()
		u.sys.fw.bios = version
		u.sys.fw.mu.Unlock()
		u.srv.record(u.sys, events.BMCRedfishFirmware, "BIOS "+bios+" -> "+version)
	}
	if u.bmc {
		r.progress(80, nil)
		if err := u.rebootBMC(ctx, bmc, version); err != nil {
			return err
		}
	}
	r.progress(100, updateMessage("UpdateSuccessful", fmt.Sprintf("Device '%s' successfully updated to version %s.", u.sys.hw.Name, version), "OK"))
	return nil
}

// download fetches the image; it returns its first versionWindow bytes.
func (u update) download(ctx context.Context) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, imageTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.image.String(), nil)
	if err != nil {
		return nil, err
	}
	if u.user != "" {
		req.SetBasicAuth(u.user, u.pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %s", resp.Status)
	}
	if resp.ContentLength > maxImage {
		return nil, fmt.Errorf("the image is %d bytes, more than the %d this BMC takes", resp.ContentLength, maxImage)
	}
	var head bytes.Buffer
	if _, err := io.CopyN(&head, resp.Body, versionWindow); err != nil && err != io.EOF {
		return nil, err
	}
	rest, err := io.Copy(io.Discard, io.LimitReader(resp.Body, maxImage-int64(head.Len())+1))
	if err != nil {
		return nil, err
	}
	if int64(head.Len())+rest > maxImage {
		return nil, fmt.Errorf("the image is more than the %d bytes this BMC takes", maxImage)
	}
	return head.Bytes(), nil
}

// newVersion derives an image's version: from its file name, else its
// contents, else cur bumped.
func newVersion(image *url.URL, head []byte, cur string) string {
	if all := dottedVersion.FindAllString(path.Base(image.Path), -1); len(all) > 0 {
		return all[len(all)-1]
	}
	if m := contentVersion.FindSubmatch(head); m != nil {
		return string(m[1])
	}
	return bump(cur)
}

// bump adds one to the last number of a dotted version ("2.10" → "2.11");
// a version not ending in a number gets ".1".
func bump(v string) string {
	i := strings.LastIndexFunc(v, func(r rune) bool { return r < '0' || r > '9' })
	n, err := strconv.Atoi(v[i+1:])
	if err != nil {
		return v + ".1"
	}
	return v[:i+1] + strconv.Itoa(n+1)
}

// rebootBMC reboots the BMC into version: requests to the system answer
// 503 until Config.FirmwareReboot has passed on Config.Now's clock, then
// the new version shows.
func (u update) rebootBMC(ctx context.Context, old, version string) error {
	until := u.srv.cfg.Now().Add(u.srv.cfg.FirmwareReboot)
	u.sys.fw.mu.Lock()
	u.sys.fw.rebooting = true
	u.sys.fw.mu.Unlock()
	u.sys.log().Info("BMC rebooting into new firmware", "event", "firmware", "version", version)
	u.srv.record(u.sys, events.BMCRedfishFirmware, "BMC rebooting: "+old+" -> "+version)
	tick := time.NewTicker(min(u.srv.cfg.FirmwareReboot, 50*time.Millisecond))
	defer tick.Stop()
	for u.srv.cfg.Now().Before(until) {
		select {
		case <-tick.C:
		case <-ctx.Done():
			u.sys.fw.mu.Lock()
			u.sys.fw.rebooting = false
			u.sys.fw.mu.Unlock()
			return ctx.Err()
		}
	}
	u.sys.fw.mu.Lock()
	u.sys.fw.bmc = version
	u.sys.fw.rebooting = false
	u.sys.fw.mu.Unlock()
	u.srv.record(u.sys, events.BMCRedfishFirmware, "BMC up: "+version)
	return nil
}
