package redfish

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// The BIOS attribute registry: one for every machine of the service, as a
// BMC serves one for the firmware of its model. Clients find it through
// /redfish/v1/Registries (a MessageRegistryFile whose Location is the
// registry's JSON) and match it to a Bios by the Bios's AttributeRegistry,
// which names the registry's Id.
const (
	biosRegistryID      = "BiosAttributeRegistry.v1_0_0"
	biosRegistryName    = "BiosAttributeRegistry.1.0" // MessageRegistryFile.Registry: name.major.minor
	biosRegistryVersion = "1.0.0"
	registriesPath      = "/redfish/v1/Registries"
	biosRegistryPath    = registriesPath + "/" + biosRegistryID
	biosRegistryURI     = biosRegistryPath + "/" + biosRegistryID + ".json"
	// biosVersion is the firmware the registry describes and every
	// system's BIOS version until an update (SystemBiosVersion, BiosVersion).
	biosVersion = "1.0.0"
)

// Attribute types of an AttributeRegistry entry.
const (
	typeEnumeration = "Enumeration"
	typeInteger     = "Integer"
	typeBoolean     = "Boolean"
	typeString      = "String"
)

// biosAttribute is one entry of the registry: what Bios.Attributes may hold
// under its name and what a Settings PATCH may set it to.
type biosAttribute struct {
	name, display, help string
	typ                 string
	values              []string // Enumeration: the allowed values
	readOnly            bool
	// def is the value ResetBios restores; nil for a read-only attribute
	// whose value is the machine's own (BootMode).
	def            any
	lower, upper   int64 // Integer bounds
	minLen, maxLen int   // String length bounds
}

// biosAttributes is the registry, in menu order.
var biosAttributes = []biosAttribute{
	{name: "BootMode", display: "Boot Mode", help: "The firmware's boot mode: UEFI or legacy BIOS. Fixed by the machine's firmware.",
		typ: typeEnumeration, values: []string{"Uefi", "Bios"}, readOnly: true},
	{name: "SystemBiosVersion", display: "System BIOS Version", help: "The version of the system firmware.",
		typ: typeString, readOnly: true, def: biosVersion, maxLen: 32},
	{name: "ProcTurboMode", display: "Turbo Mode", help: "Lets the processors run above their base frequency.",
		typ: typeEnumeration, values: []string{"Enabled", "Disabled"}, def: "Enabled"},
	{name: "ProcVirtualization", display: "Virtualization Technology", help: "Exposes the processors' hardware virtualization.",
		typ: typeEnumeration, values: []string{"Enabled", "Disabled"}, def: "Enabled"},
	{name: "LogicalProc", display: "Logical Processor", help: "Enables the processors' second hardware thread per core.",
		typ: typeEnumeration, values: []string{"Enabled", "Disabled"}, def: "Enabled"},
	{name: "SriovGlobalEnable", display: "SR-IOV Global Enable", help: "Lets the firmware configure SR-IOV devices.",
		typ: typeEnumeration, values: []string{"Enabled", "Disabled"}, def: "Disabled"},
	{name: "EmbeddedSata", display: "Embedded SATA", help: "The mode of the embedded SATA controller.",
		typ: typeEnumeration, values: []string{"AhciMode", "RaidMode", "Off"}, def: "AhciMode"},
	{name: "NicBoot1", display: "Embedded NIC 1 Boot", help: "Whether the first NIC's option ROM offers a network boot.",
		typ: typeEnumeration, values: []string{"NetworkBoot", "Disabled"}, def: "NetworkBoot"},
	{name: "PxeRetryCount", display: "PXE Retry Count", help: "How many times a network boot is retried before the next device.",
		typ: typeInteger, def: int64(3), lower: 0, upper: 10},
	{name: "OsWatchdogTimer", display: "OS Watchdog Timer", help: "Resets the machine when the OS stops answering the watchdog.",
		typ: typeBoolean, def: false},
	{name: "AssetTag", display: "Asset Tag", help: "A tag the owner gives the machine.",
		typ: typeString, def: "", minLen: 0, maxLen: 32},
}

// biosAttributeByName finds a registry entry.
func biosAttributeByName(name string) (biosAttribute, bool) {
	for _, a := range biosAttributes {
		if a.name == name {
			return a, true
		}
	}
	return biosAttribute{}, false
}

// initial is the attribute's value on a machine whose firmware boots UEFI
// (or not): its default, or the machine's own for BootMode.
func (a biosAttribute) initial(uefi bool) any {
	if a.name == "BootMode" {
		if uefi {
			return "Uefi"
		}
		return "Bios"
	}
	return a.def
}

// parse checks a value a client sent for the attribute and returns it as
// stored (string, int64 or bool), or the Redfish error naming it.
func (a biosAttribute) parse(raw json.RawMessage) (any, *propertyError) {
	prop := "Attributes/" + a.name
	text := strings.TrimSpace(string(raw))
	if a.readOnly {
		return nil, &propertyError{"PropertyNotWritable", fmt.Sprintf("The property %s is a read only property and cannot be assigned a value.", prop), []string{prop}, prop}
	}
	typeErr := &propertyError{"PropertyValueTypeError", fmt.Sprintf("The value %s for the property %s is of a different type than the property can accept (%s).", text, prop, a.typ), []string{text, prop}, prop}
	switch a.typ {
	case typeEnumeration, typeString:
		var s string
		if text == "null" || json.Unmarshal(raw, &s) != nil {
			return nil, typeErr
		}
		if a.typ == typeEnumeration {
			for _, v := range a.values {
				if v == s {
					return s, nil
				}
			}
			return nil, &propertyError{"PropertyValueNotInList", fmt.Sprintf("The value %q for the property %s is not in the list of acceptable values (%s).", s, prop, strings.Join(a.values, ", ")), []string{s, prop}, prop}
		}
		if n := len([]rune(s)); n < a.minLen || n > a.maxLen {
			return nil, &propertyError{"PropertyValueOutOfRange", fmt.Sprintf("The value %q for the property %s is not between %d and %d characters long.", s, prop, a.minLen, a.maxLen), []string{s, prop}, prop}
		}
		return s, nil
	case typeInteger:
		var f float64
		if text == "null" || json.Unmarshal(raw, &f) != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			return nil, typeErr
		}
		n := int64(f)
		if n < a.lower || n > a.upper {
			return nil, &propertyError{"PropertyValueOutOfRange", fmt.Sprintf("The value %d for the property %s is not in the supported range %d to %d.", n, prop, a.lower, a.upper), []string{strconv.FormatInt(n, 10), prop}, prop}
		}
		return n, nil
	case typeBoolean:
		var b bool
		if text == "null" || json.Unmarshal(raw, &b) != nil {
			return nil, typeErr
		}
		return b, nil
	}
	return nil, typeErr
}

// entry renders the attribute as an AttributeRegistry entry.
func (a biosAttribute) entry() registryAttribute {
	e := registryAttribute{
		AttributeName: a.name, DisplayName: a.display, HelpText: a.help, Type: a.typ,
		DefaultValue: a.def, ReadOnly: a.readOnly, ResetRequired: true,
	}
	for _, v := range a.values {
		e.Value = append(e.Value, attributeValue{ValueName: v, ValueDisplayName: v})
	}
	switch a.typ {
	case typeInteger:
		lo, hi, step := a.lower, a.upper, int64(1)
		e.LowerBound, e.UpperBound, e.ScalarIncrement = &lo, &hi, &step
	case typeString:
		lo, hi := a.minLen, a.maxLen
		e.MinLength, e.MaxLength = &lo, &hi
	}
	return e
}

// The registry's resources (AttributeRegistry.v1_3_5, MessageRegistryFile
// v1_1_0): the Registries collection is service-wide.

type attributeRegistry struct {
	ODataType        string            `json:"@odata.type"`
	ID               string            `json:"Id"`
	Name             string            `json:"Name"`
	Description      string            `json:"Description"`
	Language         string            `json:"Language"`
	OwningEntity     string            `json:"OwningEntity"`
	RegistryVersion  string            `json:"RegistryVersion"`
	SupportedSystems []supportedSystem `json:"SupportedSystems"`
	RegistryEntries  registryEntries   `json:"RegistryEntries"`
}

type supportedSystem struct {
	ProductName     string `json:"ProductName"`
	SystemID        string `json:"SystemId"`
	FirmwareVersion string `json:"FirmwareVersion"`
}

type registryEntries struct {
	Attributes []registryAttribute `json:"Attributes"`
}

type registryAttribute struct {
	AttributeName   string           `json:"AttributeName"`
	DisplayName     string           `json:"DisplayName"`
	HelpText        string           `json:"HelpText"`
	Type            string           `json:"Type"`
	Value           []attributeValue `json:"Value,omitempty"`
	DefaultValue    any              `json:"DefaultValue,omitempty"` // only a nil default is left out
	ReadOnly        bool             `json:"ReadOnly"`
	ResetRequired   bool             `json:"ResetRequired"`
	LowerBound      *int64           `json:"LowerBound,omitempty"`
	UpperBound      *int64           `json:"UpperBound,omitempty"`
	ScalarIncrement *int64           `json:"ScalarIncrement,omitempty"`
	MinLength       *int             `json:"MinLength,omitempty"`
	MaxLength       *int             `json:"MaxLength,omitempty"`
}

type attributeValue struct {
	ValueName        string `json:"ValueName"`
	ValueDisplayName string `json:"ValueDisplayName"`
}

type messageRegistryFile struct {
	resource
	Description string             `json:"Description"`
	Languages   []string           `json:"Languages"`
	Registry    string             `json:"Registry"`
	Location    []registryLocation `json:"Location"`
}

type registryLocation struct {
	Language string `json:"Language"`
	URI      string `json:"Uri"`
}

// biosRegistry is the attribute registry document.
func biosRegistry() attributeRegistry {
	r := attributeRegistry{
		ODataType:       "#AttributeRegistry.v1_3_5.AttributeRegistry",
		ID:              biosRegistryID,
		Name:            "metalbed BIOS Attribute Registry",
		Description:     "The BIOS attributes of metalbed's simulated machines",
		Language:        "en",
		OwningEntity:    "metalbed",
		RegistryVersion: biosRegistryVersion,
		SupportedSystems: []supportedSystem{{
			ProductName: "metalbed simulated machine", SystemID: "metalbed", FirmwareVersion: biosVersion,
		}},
	}
	for _, a := range biosAttributes {
		r.RegistryEntries.Attributes = append(r.RegistryEntries.Attributes, a.entry())
	}
	return r
}

func (s *Server) getRegistries(q *request) error {
	return q.ok(newCollection(registriesPath, "#MessageRegistryFileCollection.MessageRegistryFileCollection",
		"Registry File Collection", []string{biosRegistryPath}))
}

func (s *Server) getRegistryFile(q *request) error {
	if q.r.PathValue("reg") != biosRegistryID {
		return errNotFound(q.r.URL.Path)
	}
	return q.ok(messageRegistryFile{
		resource:    resource{ODataID: biosRegistryPath, ODataType: "#MessageRegistryFile.v1_1_0.MessageRegistryFile", ID: biosRegistryID, Name: "BIOS Attribute Registry File"},
		Description: "Where the BIOS attribute registry is served",
		Languages:   []string{"en"},
		Registry:    biosRegistryName,
		Location:    []registryLocation{{Language: "en", URI: biosRegistryURI}},
	})
}

func (s *Server) getRegistry(q *request) error {
	if q.r.URL.Path != biosRegistryURI {
		return errNotFound(q.r.URL.Path)
	}
	return q.ok(biosRegistry())
}
