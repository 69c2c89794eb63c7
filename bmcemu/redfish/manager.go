package redfish

import (
	"fmt"
	"github.com/metalbed/metalbed/internal/events"
	"regexp"
	"sync"
	"time"
)

// clock is a Manager's own idea of the time: the service's clock plus
// what a client set through DateTime, shown in the zone DateTimeLocalOffset
// names.
type clock struct {
	mu     sync.Mutex
	offset time.Duration // DateTime set minus the service's clock
	zone   string        // "+HH:MM" or "-HH:MM"
}

// dateTimeLayout is Edm.DateTimeOffset as Redfish writes it.
const dateTimeLayout = "2006-01-02T15:04:05-07:00"

var offsetPattern = regexp.MustCompile(`^[+-](?:[01][0-9]|2[0-3]):[0-5][0-9]$`)

// now is the Manager's DateTime and DateTimeLocalOffset.
func (c *clock) now(base time.Time) (dateTime, zone string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	zone = c.zone
	if zone == "" {
		zone = "+00:00"
	}
	loc, _ := zoneOf(zone)
	return base.Add(c.offset).In(loc).Format(dateTimeLayout), zone
}

// set applies a PATCH of DateTime and DateTimeLocalOffset (either may be
// nil). Nothing changes unless both are valid.
func (c *clock) set(base time.Time, dateTime, zone *string) error {
	var at time.Time
	if dateTime != nil {
		t, err := time.Parse(time.RFC3339, *dateTime)
		if err != nil {
			return errBadFormat("DateTime", *dateTime)
		}
		at = t
	}
	if zone != nil {
		if _, err := zoneOf(*zone); err != nil {
			return errBadFormat("DateTimeLocalOffset", *zone)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if dateTime != nil {
		c.offset = at.Sub(base)
	}
	if zone != nil {
		c.zone = *zone
	}
	return nil
}

// zoneOf parses "+HH:MM" / "-HH:MM" into a fixed zone.
func zoneOf(s string) (*time.Location, error) {
	if !offsetPattern.MatchString(s) {
		return nil, fmt.Errorf("offset %q is not +HH:MM or -HH:MM", s)
	}
	var h, m int
	fmt.Sscanf(s[1:], "%d:%d", &h, &m)
	secs := (h*60 + m) * 60
	if s[0] == '-' {
		secs = -secs
	}
	return time.FixedZone(s, secs), nil
}

// managerPatch is the writable part of a Manager.
type managerPatch struct {
	DateTime            *string `json:"DateTime"`
	DateTimeLocalOffset *string `json:"DateTimeLocalOffset"`
}

func (s *Server) patchManager(q *request, sys *system) error {
	var p managerPatch
	if err := decodeBody(q.r.Body, &p, false); err != nil {
		return err
	}
	if match := q.r.Header.Values("If-Match"); len(match) > 0 {
		tag, err := etagOf(s.managerView(sys))
		if err != nil {
			return err
		}
		if !ifMatch(match, tag) {
			return errPrecondition()
		}
	}
	if p.DateTime == nil && p.DateTimeLocalOffset == nil {
		return errMissing("DateTime")
	}
	if err := sys.clock.set(s.cfg.Now(), p.DateTime, p.DateTimeLocalOffset); err != nil {
		return err
	}
	v := s.managerView(sys)
	s.record(sys, events.BMCRedfishManager, "DateTime "+v.DateTime)
	return q.ok(v)
}
