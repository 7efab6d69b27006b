package auditor

import (
	"encoding/json"
	"fmt"

	klog "github.com/keyline/keyline/log"
)

// checkEvidenceBase64 checks that every byte field of an evidence file
// (JSON strings that encoding/json decodes as base64, leniently: it skips
// line breaks and ignores non-zero padding bits) is canonical base64, so
// that one evidence has one encoding of each value.
func checkEvidenceBase64(data []byte) error {
	var raw struct {
		Checkpoints []string `json:"checkpoints"`
		Segments    []struct {
			Leaves []string `json:"leaves"`
			Left   []string `json:"left"`
			Right  []string `json:"right"`
		} `json:"segments"`
		Consistency *struct {
			OldRoot string   `json:"old_root"`
			Proof   []string `json:"proof"`
		} `json:"consistency"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	check := func(field string, vs ...string) error {
		for i, v := range vs {
			if _, err := klog.DecodeBase64(v); err != nil {
				return fmt.Errorf("%s[%d]: %w", field, i, err)
			}
		}
		return nil
	}
	if err := check("checkpoints", raw.Checkpoints...); err != nil {
		return err
	}
	for i, s := range raw.Segments {
		for _, f := range []struct {
			name string
			vs   []string
		}{{"leaves", s.Leaves}, {"left", s.Left}, {"right", s.Right}} {
			if err := check(fmt.Sprintf("segments[%d].%s", i, f.name), f.vs...); err != nil {
				return err
			}
		}
	}
	if c := raw.Consistency; c != nil {
		if err := check("consistency.old_root", c.OldRoot); err != nil {
			return err
		}
		if err := check("consistency.proof", c.Proof...); err != nil {
			return err
		}
	}
	return nil
}
