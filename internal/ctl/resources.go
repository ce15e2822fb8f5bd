package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tabbynet/tabby/internal/api"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/ipam"
)

// document is one decoded resource and where it came from, for messages.
type document struct {
	source string // file name or "-"
	res    api.Resource
}

// readManifests decodes every document of every file named by -f (a file,
// a directory, or "-" for stdin). All documents are decoded and validated
// before anything is written, so bad input leaves the datastore untouched.
func readManifests(g *globals, paths []string, recursive bool) ([]document, error) {
	if len(paths) == 0 {
		return nil, errors.New("no input: pass -f FILE, -f DIR or -f -")
	}
	var docs []document
	for _, p := range paths {
		if p == "-" {
			data, err := io.ReadAll(g.stdin)
			if err != nil {
				return nil, fmt.Errorf("read stdin: %w", err)
			}
			rs, err := api.Decode(data)
			if err != nil {
				return nil, fmt.Errorf("stdin: %w", err)
			}
			for _, r := range rs {
				docs = append(docs, document{source: "-", res: r})
			}
			continue
		}
		files, err := manifestFiles(p, recursive)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			rs, err := api.Decode(data)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			for _, r := range rs {
				docs = append(docs, document{source: f, res: r})
			}
		}
	}
	if len(docs) == 0 {
		return nil, errors.New("no resources found in the input")
	}
	return docs, nil
}

// manifestFiles expands a directory into its .yaml, .yml and .json files.
func manifestFiles(p string, recursive bool) ([]string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{p}, nil
	}
	var out []string
	err = filepath.WalkDir(p, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != p && !recursive {
				return filepath.SkipDir
			}
			return nil
		}
		switch strings.ToLower(filepath.Ext(path)) {
		case ".yaml", ".yml", ".json":
			out = append(out, path)
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

// describe names a resource in messages: NetworkPolicy "default/allow-web".
func describe(r api.Resource) string {
	m := r.GetObjectMeta()
	if r.KindInfo().Scope == api.Namespaced {
		ns := m.Namespace
		if ns == "" {
			ns = api.DefaultNamespace
		}
		return fmt.Sprintf("%s %q", r.KindInfo().Kind, ns+"/"+m.Name)
	}
	return fmt.Sprintf("%s %q", r.KindInfo().Kind, m.Name)
}

type writeVerb struct {
	name    string // apply, create, replace, delete
	past    string // applied, created, …
	short   string
	skipOpt string // --skip-exists / --skip-not-exists
}

var writeVerbs = []writeVerb{
	{name: "apply", past: "applied", short: "Create or replace resources from a file, directory or stdin"},
	{name: "create", past: "created", short: "Create resources; fails if one exists (unless --skip-exists)", skipOpt: "skip-exists"},
	{name: "replace", past: "replaced", short: "Replace existing resources; fails if one is missing"},
}

func newWriteCommand(g *globals, v writeVerb) *cobra.Command {
	var files []string
	var recursive, skip, dryRun bool
	cmd := &cobra.Command{
		Use:   v.name + " -f FILE|DIR|- [--dry-run]",
		Short: v.short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			docs, err := readManifests(g, files, recursive)
			if err != nil {
				return err
			}
			store, err := g.connect()
			if err != nil {
				return err
			}
			defer store.Close()
			c := datastore.NewClient(store)
			plan, err := preflight(cmd.Context(), c, v.name, skip, docs)
			if err != nil {
				return err
			}
			if err := checkPools(cmd.Context(), c, v.name, docs); err != nil {
				return err
			}
			if err := checkPoolsWithIPAM(cmd.Context(), store, c, docs); err != nil {
				return err
			}
			if dryRun {
				fmt.Fprintf(g.stdout, "Dry run: %s; nothing was written\n", plan.summary())
				return nil
			}
			return runWrites(cmd.Context(), g, v, docs, func(ctx context.Context, r api.Resource) (bool, error) {
				return writeOne(ctx, c, v.name, skip, r)
			})
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "file, directory or - (stdin) holding the resources")
	cmd.Flags().BoolVarP(&recursive, "recursive", "R", false, "descend into subdirectories of -f DIR")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "validate everything against the datastore and report what would change; write nothing")
	if v.skipOpt != "" {
		cmd.Flags().BoolVar(&skip, v.skipOpt, false, "do not fail on resources that already exist")
	}
	return cmd
}

// storedVersions reads the stored version of every document's resource:
// one Get each for a few, one List per kind for many.
func storedVersions(ctx context.Context, c *datastore.Client, docs []document) (map[string]api.Resource, error) {
	perKind := map[string]int{}
	for _, d := range docs {
		perKind[d.res.KindInfo().Kind]++
	}
	out := map[string]api.Resource{}
	for kind, n := range perKind {
		if n <= 8 {
			continue
		}
		rs, _, err := c.List(ctx, kind, "")
		if err != nil {
			return nil, err
		}
		for _, r := range rs {
			m := r.GetObjectMeta()
			out[datastore.ResourceKey(r.KindInfo(), m.Namespace, m.Name)] = r
		}
	}
	for _, d := range docs {
		k, m := d.res.KindInfo(), d.res.GetObjectMeta()
		if perKind[k.Kind] > 8 {
			continue
		}
		r, err := c.Get(ctx, k.Kind, m.Namespace, m.Name)
		switch {
		case err == nil:
			out[datastore.ResourceKey(k, m.Namespace, m.Name)] = r
		case !errors.Is(err, datastore.ErrNotFound):
			return nil, fmt.Errorf("%s: %w", describe(d.res), err)
		}
	}
	return out, nil
}

// writeOne performs one document's write for a write verb.
func writeOne(ctx context.Context, c *datastore.Client, verb string, skip bool, r api.Resource) (bool, error) {
	switch verb {
	case "create":
		_, err := c.Create(ctx, r)
		if skip && errors.Is(err, datastore.ErrExists) {
			return false, nil
		}
		return true, err
	case "replace":
		if r.GetObjectMeta().ResourceVersion == "" {
			cur, err := c.Get(ctx, r.KindInfo().Kind, r.GetObjectMeta().Namespace, r.GetObjectMeta().Name)
			if err != nil {
				return false, err
			}
			r.GetObjectMeta().ResourceVersion = cur.GetObjectMeta().ResourceVersion
		}
		_, err := c.Update(ctx, r)
		return true, err
	default:
		_, _, err := c.Apply(ctx, r)
		return true, err
	}
}

// writePlan counts what a write verb is about to do.
type writePlan struct{ create, replace, skip int }

func (p writePlan) summary() string {
	var parts []string
	if p.create > 0 {
		parts = append(parts, fmt.Sprintf("would create %d", p.create))
	}
	if p.replace > 0 {
		parts = append(parts, fmt.Sprintf("would replace %d", p.replace))
	}
	if p.skip > 0 {
		parts = append(parts, fmt.Sprintf("would skip %d (already exist)", p.skip))
	}
	if len(parts) == 0 {
		return "no changes"
	}
	return strings.Join(parts, ", ") + " resource(s)"
}

// preflight checks every document against the datastore before anything
// is written: create refuses what exists (unless skip) and names given
// twice, replace refuses what is missing, and both replace and apply refuse
// a stale resourceVersion and changes to fields that may not change. A
// multi-document input thus fails before its first write, not half way.
// (A concurrent writer can still win between this check and the write;
// the write itself is compare-and-swap and then fails cleanly.)
func preflight(ctx context.Context, c *datastore.Client, verb string, skip bool, docs []document) (writePlan, error) {
	var plan writePlan
	stored, err := storedVersions(ctx, c, docs)
	if err != nil {
		return plan, fmt.Errorf("%s: %w", verb, err)
	}
	seen := map[string]bool{}
	for _, d := range docs {
		r := d.res
		m := r.GetObjectMeta()
		key := datastore.ResourceKey(r.KindInfo(), m.Namespace, m.Name)
		dup := seen[key]
		seen[key] = true
		cur, exists := stored[key]
		switch {
		case verb == "create" && (exists || dup) && skip:
			plan.skip++
			continue
		case verb == "create" && exists:
			return plan, fmt.Errorf("%s %s: %w", verb, describe(r), datastore.ErrExists)
		case verb == "create" && dup:
			return plan, fmt.Errorf("%s %s: the input holds it twice", verb, describe(r))
		case verb == "replace" && !exists:
			return plan, fmt.Errorf("%s %s: %w", verb, describe(r), datastore.ErrNotFound)
		}
		if !exists {
			plan.create++
			continue
		}
		if rv := m.ResourceVersion; rv != "" && rv != cur.GetObjectMeta().ResourceVersion && !dup {
			return plan, fmt.Errorf("%s %s: metadata.resourceVersion %s: %w (now %s)", verb, describe(r), rv, datastore.ErrConflict, cur.GetObjectMeta().ResourceVersion)
		}
		if err := api.ValidateUpdate(cur, r); err != nil {
			return plan, fmt.Errorf("%s %s: %w", verb, describe(r), err)
		}
		plan.replace++
	}
	return plan, nil
}

// runWrites applies fn to the documents in order, stopping at the first
// error, and reports how many succeeded the way calicoctl does.
func runWrites(ctx context.Context, g *globals, v writeVerb, docs []document, fn func(context.Context, api.Resource) (bool, error)) error {
	done, skipped := 0, 0
	for _, d := range docs {
		wrote, err := fn(ctx, d.res)
		if err != nil {
			if done > 0 {
				fmt.Fprintf(g.stderr, "Partial success: %s the first %d out of %d resources\n", v.past, done, len(docs))
			}
			return fmt.Errorf("%s %s: %w", v.name, describe(d.res), err)
		}
		if !wrote {
			skipped++
		}
		done++
	}
	fmt.Fprintf(g.stdout, "Successfully %s %d resource(s)%s\n", v.past, done-skipped, skippedNote(skipped))
	return nil
}

func skippedNote(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d skipped)", n)
}

// checkPools refuses IPPools that overlap an existing pool or one another,
// and changes to immutable pool fields, before anything is written.
func checkPools(ctx context.Context, c *datastore.Client, verb string, docs []document) error {
	var incoming []*api.IPPool
	for _, d := range docs {
		if p, ok := d.res.(*api.IPPool); ok {
			incoming = append(incoming, p)
		}
	}
	if len(incoming) == 0 {
		return nil
	}
	existing, _, err := c.List(ctx, "IPPool", "")
	if err != nil {
		return err
	}
	byName := map[string]*api.IPPool{}
	for _, r := range existing {
		p := r.(*api.IPPool)
		byName[p.Name] = p
	}
	for _, p := range incoming {
		if old, ok := byName[p.Name]; ok && verb != "create" {
			if err := api.ValidateUpdate(old, p); err != nil {
				return fmt.Errorf("%s IPPool %q: %w", verb, p.Name, err)
			}
		}
		byName[p.Name] = p
	}
	var all []*api.IPPool
	for _, p := range byName {
		all = append(all, p)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Name < all[j].Name })
	for i, p := range all {
		if err := api.CheckPoolOverlap(all[:i], p); err != nil {
			return fmt.Errorf("%s IPPool %q: %w", verb, p.Name, err)
		}
	}
	return nil
}

// checkPoolsWithIPAM asks IPAM about each pool change: a new pool must not
// cover leftover blocks of another size, and so on.
func checkPoolsWithIPAM(ctx context.Context, store datastore.Store, c *datastore.Client, docs []document) error {
	m := ipam.New(store, nil)
	for _, d := range docs {
		p, ok := d.res.(*api.IPPool)
		if !ok {
			continue
		}
		var old *api.IPPool
		if r, err := c.Get(ctx, "IPPool", "", p.Name); err == nil {
			old = r.(*api.IPPool)
		} else if !errors.Is(err, datastore.ErrNotFound) {
			return err
		}
		if err := m.CheckPoolChange(ctx, old, p); err != nil {
			return fmt.Errorf("IPPool %q: %w", p.Name, err)
		}
	}
	return nil
}

func newDeleteCommand(g *globals) *cobra.Command {
	var files []string
	var recursive, skip bool
	var namespace string
	cmd := &cobra.Command{
		Use:   "delete (-f FILE|DIR|- | KIND NAME...)",
		Short: "Delete resources named in a file or on the command line",
		RunE: func(cmd *cobra.Command, args []string) error {
			var docs []document
			switch {
			case len(files) > 0 && len(args) > 0:
				return errors.New("give either -f or KIND NAME..., not both")
			case len(files) > 0:
				var err error
				if docs, err = readManifests(g, files, recursive); err != nil {
					return err
				}
			case len(args) >= 2:
				k, ok := api.LookupKind(args[0])
				if !ok {
					return fmt.Errorf("unknown resource kind %q (kinds: %s)", args[0], kindNames())
				}
				for _, name := range args[1:] {
					r := k.NewFunc()
					r.GetObjectMeta().Name = name
					r.GetObjectMeta().Namespace = namespace
					docs = append(docs, document{source: "args", res: r})
				}
			default:
				return errors.New("delete needs -f FILE or KIND NAME")
			}
			store, err := g.connect()
			if err != nil {
				return err
			}
			defer store.Close()
			c := datastore.NewClient(store)
			return runWrites(cmd.Context(), g, writeVerb{name: "delete", past: "deleted"}, docs, func(ctx context.Context, r api.Resource) (bool, error) {
				m := r.GetObjectMeta()
				var err error
				if r.KindInfo().Kind == "IPPool" {
					// IPAM refuses while addresses are allocated in the pool
					// and removes its empty blocks.
					if _, err = c.Get(ctx, "IPPool", "", m.Name); err == nil {
						err = ipam.New(store, nil).DeletePool(ctx, m.Name)
					}
				} else {
					_, err = c.Delete(ctx, r.KindInfo().Kind, m.Namespace, m.Name, m.ResourceVersion)
				}
				if skip && errors.Is(err, datastore.ErrNotFound) {
					return false, nil
				}
				return true, err
			})
		},
		ValidArgsFunction: completeKinds,
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "file, directory or - (stdin) holding the resources")
	cmd.Flags().BoolVarP(&recursive, "recursive", "R", false, "descend into subdirectories of -f DIR")
	cmd.Flags().BoolVar(&skip, "skip-not-exists", false, "do not fail on resources that do not exist")
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "namespace of namespaced resources (default \"default\")")
	return cmd
}

func kindNames() string {
	var names []string
	for _, k := range api.Kinds {
		names = append(names, k.Kind)
	}
	return strings.Join(names, ", ")
}

func completeKinds(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var names []string
	for _, k := range api.Kinds {
		names = append(names, strings.ToLower(k.Kind), k.Plural)
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

func newGetCommand(g *globals) *cobra.Command {
	var namespace, output, tmpl string
	var all bool
	cmd := &cobra.Command{
		Use:   "get KIND [NAME...]",
		Short: "Show resources",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, ok := api.LookupKind(args[0])
			if !ok {
				return fmt.Errorf("unknown resource kind %q (kinds: %s)", args[0], kindNames())
			}
			format, err := parseOutput(output, tmpl)
			if err != nil {
				return err
			}
			if all && namespace != "" {
				return errors.New("-n and -A are exclusive")
			}
			ns := namespace
			if k.Scope == api.Namespaced && ns == "" && !all {
				ns = api.DefaultNamespace
			}
			store, err := g.connect()
			if err != nil {
				return err
			}
			defer store.Close()
			c := datastore.NewClient(store)
			var rs []api.Resource
			var listErr error // records that cannot be decoded: shown after the others
			if len(args) > 1 {
				for _, name := range args[1:] {
					r, err := c.Get(cmd.Context(), k.Kind, ns, name)
					if err != nil {
						return err
					}
					rs = append(rs, r)
				}
			} else if rs, _, err = c.List(cmd.Context(), k.Kind, ns); err != nil {
				var bad *datastore.BadRecordsError
				if !errors.As(err, &bad) {
					return err
				}
				listErr = err
			}
			for i := range rs {
				rs[i] = api.Redact(rs[i])
			}
			switch format.kind {
			case "yaml", "json":
				err = api.Encode(g.stdout, rs, format.kind)
			case "custom-columns", "go-template":
				err = printCustom(g.stdout, format, rs, len(args) > 1)
			default:
				var extra []column
				if format.kind == "wide" {
					st, serr := policyStatusColumn(cmd.Context(), c, k)
					if serr != nil {
						return serr
					}
					if st != nil {
						extra = append(extra, *st)
					}
				}
				err = printTable(g.stdout, k, rs, format.kind == "wide", all, extra...)
			}
			return errors.Join(err, listErr)
		},
		ValidArgsFunction: completeKinds,
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "namespace (default \"default\")")
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "list namespaced resources of every namespace")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table, wide, yaml, json, custom-columns=TITLE:.field.path,..., go-template=TEXT or go-template-file=FILE")
	cmd.Flags().StringVar(&tmpl, "template", "", "the template of -o go-template")
	return cmd
}

func resourceCommands(g *globals) []*cobra.Command {
	return []*cobra.Command{
		newWriteCommand(g, writeVerbs[0]),
		newWriteCommand(g, writeVerbs[1]),
		newWriteCommand(g, writeVerbs[2]),
		newDeleteCommand(g),
		newGetCommand(g),
		newLabelCommand(g),
		newPatchCommand(g),
		newValidateCommand(g),
	}
}
