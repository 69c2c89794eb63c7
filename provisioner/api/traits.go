package api

import (
	_ "embed"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/metalbed/metalbed/provisioner"
)

// osTraits is os-traits 2.9.0's list of standard traits (Ironic 21.4's
// STANDARD_TRAITS), one a line.
//
//go:embed os_traits.txt
var osTraits string

// standardTraits holds the names in osTraits.
var standardTraits = func() map[string]bool {
	m := map[string]bool{}
	for _, t := range strings.Fields(osTraits) {
		m[t] = true
	}
	return m
}()

// customTraitRE is Ironic's CUSTOM_TRAIT_PATTERN.
var customTraitRE = regexp.MustCompile(`^CUSTOM_[A-Z0-9_]+$`)

// validTrait is Ironic's TRAITS_SCHEMA: 1 to 255 characters, a custom
// trait or a standard one.
func validTrait(t string) bool {
	return len(t) > 0 && len(t) <= 255 && (customTraitRE.MatchString(t) || standardTraits[t])
}

const maxTraits = 50

func checkTrait(t string) error {
	if !validTrait(t) {
		return badRequest("Invalid trait. A valid trait must be no longer than 255 characters. Standard traits are defined in the os_traits library. A custom trait must start with the prefix CUSTOM_ and use the following characters: A-Z, 0-9 and _")
	}
	return nil
}

func (s *Server) getTraits(w http.ResponseWriter, r *http.Request) error {
	if minor(r) < 37 {
		return errNotFound
	}
	n, err := s.c.Node(r.Context(), r.PathValue("node"))
	if err != nil {
		return err
	}
	traits := n.Traits
	if traits == nil {
		traits = []string{}
	}
	writeJSON(w, http.StatusOK, obj{{"traits", traits}})
	return nil
}

// setTraits replaces all traits (PUT .../traits) or adds one (PUT
// .../traits/{trait}).
func (s *Server) setTraits(w http.ResponseWriter, r *http.Request) error {
	if minor(r) < 37 {
		return errNotFound
	}
	var want []string
	one := r.PathValue("trait")
	if one != "" {
		if err := checkTrait(one); err != nil {
			return err
		}
	} else {
		var body struct {
			Traits *[]string `json:"traits"`
		}
		if err := readBody(r, &body); err != nil {
			return err
		}
		if body.Traits == nil {
			return badRequest("Invalid input for field/attribute traits. Value: 'None'. Mandatory field missing.")
		}
		for _, t := range *body.Traits {
			if err := checkTrait(t); err != nil {
				return err
			}
			if !slices.Contains(want, t) {
				want = append(want, t)
			}
		}
	}
	_, err := s.c.UpdateNode(r.Context(), r.PathValue("node"), func(n *provisioner.Node) error {
		next := want
		if one != "" {
			next = slices.Clone(n.Traits)
			if !slices.Contains(next, one) {
				next = append(next, one)
			}
		}
		if len(next) > maxTraits {
			return badRequest(fmt.Sprintf("Could not modify traits for node %s: a node can have at most %d traits.", n.UUID, maxTraits))
		}
		slices.Sort(next)
		n.Traits = next
		return nil
	})
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// deleteTraits removes all traits or one.
func (s *Server) deleteTraits(w http.ResponseWriter, r *http.Request) error {
	if minor(r) < 37 {
		return errNotFound
	}
	one := r.PathValue("trait")
	_, err := s.c.UpdateNode(r.Context(), r.PathValue("node"), func(n *provisioner.Node) error {
		if one == "" {
			n.Traits = nil
			return nil
		}
		i := slices.Index(n.Traits, one)
		if i < 0 {
			return clientErr(http.StatusNotFound, fmt.Sprintf("Node %s doesn't have a trait '%s'", n.UUID, one))
		}
		n.Traits = slices.Delete(slices.Clone(n.Traits), i, i+1)
		return nil
	})
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
