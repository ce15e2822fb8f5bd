package ctl

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/tabbynet/tabby/internal/api"
)

// newPatchCommand is calicoctl's patch verb: tabby patch KIND NAME -p PATCH.
func newPatchCommand(g *globals) *cobra.Command {
	var namespace, patch, typ string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "patch KIND NAME -p PATCH [--type merge|strategic]",
		Short: "Change fields of a resource with a JSON or YAML merge patch (compare-and-swap)",
		Long: "Merges PATCH (JSON or YAML) into the stored resource: objects merge key by key, a null\n" +
			"removes a key, lists and values replace what is there (RFC 7386). Tabby's kinds carry no\n" +
			"list merge keys, so --type strategic means the same as merge. The result goes through the\n" +
			"same validation and compare-and-swap as replace; nothing is written when it is invalid.",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if typ != "merge" && typ != "strategic" {
				return exitError{code: 2, msg: fmt.Sprintf("patch: --type %q is not supported; use merge or strategic", typ)}
			}
			if patch == "" {
				return exitError{code: 2, msg: "patch: -p PATCH is required"}
			}
			p, err := parsePatch(patch)
			if err != nil {
				return err
			}
			t, err := newTarget(args[0], namespace, args[1])
			if err != nil {
				return err
			}
			store, err := g.connect()
			if err != nil {
				return err
			}
			defer store.Close()
			_, err = modify(cmd.Context(), store, t, dryRun, func(cur api.Resource) (api.Resource, bool, error) {
				return applyMergePatch(cur, p)
			})
			if err != nil {
				return fmt.Errorf("patch %s: %w", t, err)
			}
			if dryRun {
				fmt.Fprintf(g.stdout, "Dry run: %s would be patched; nothing was written\n", t)
				return nil
			}
			fmt.Fprintf(g.stdout, "Successfully patched 1 resource (%s)\n", t)
			return nil
		},
		ValidArgsFunction: completeKinds,
	}
	f := cmd.Flags()
	f.StringVarP(&namespace, "namespace", "n", "", "namespace of namespaced resources (default \"default\")")
	f.StringVarP(&patch, "patch", "p", "", "the patch, JSON or YAML, e.g. '{\"spec\":{\"natOutgoing\":true}}'")
	f.StringVarP(&typ, "type", "t", "merge", "merge or strategic (the same for Tabby's kinds)")
	f.BoolVar(&dryRun, "dry-run", false, "check the patched resource and report; write nothing")
	return cmd
}

// parsePatch reads a JSON or YAML patch, which must be an object.
func parsePatch(s string) (map[string]any, error) {
	j, err := yaml.YAMLToJSON([]byte(s))
	if err != nil {
		return nil, exitError{code: 2, msg: fmt.Sprintf("patch: -p is neither JSON nor YAML: %v", err)}
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.UseNumber()
	var p map[string]any
	if err := dec.Decode(&p); err != nil || p == nil {
		return nil, exitError{code: 2, msg: fmt.Sprintf("patch: -p must be an object such as '{\"spec\":{...}}', not %s", s)}
	}
	return p, nil
}

// applyMergePatch merges p into cur and decodes the result strictly, so
// that an unknown or misspelt field is an error naming it. A patch that sets
// metadata.resourceVersion pins the write to that revision.
func applyMergePatch(cur api.Resource, p map[string]any) (api.Resource, bool, error) {
	b, err := json.Marshal(cur)
	if err != nil {
		return nil, false, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, false, err
	}
	merged, err := json.Marshal(mergePatch(doc, p))
	if err != nil {
		return nil, false, err
	}
	rs, err := api.DecodeNoValidate(merged)
	if err != nil {
		var de *api.DecodeError
		if errors.As(err, &de) {
			return nil, false, de.Err
		}
		return nil, false, err
	}
	if len(rs) != 1 {
		return nil, false, fmt.Errorf("the patched document holds %d resources, want 1", len(rs))
	}
	pinned := false
	if m, ok := p["metadata"].(map[string]any); ok {
		_, pinned = m["resourceVersion"]
	}
	return rs[0], pinned, nil
}

// mergePatch is RFC 7386 JSON merge patch.
func mergePatch(target, patch any) any {
	pm, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	tm, ok := target.(map[string]any)
	if !ok {
		tm = map[string]any{}
	}
	for k, v := range pm {
		if v == nil {
			delete(tm, k)
			continue
		}
		tm[k] = mergePatch(tm[k], v)
	}
	return tm
}
