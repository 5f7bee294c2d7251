// Package infra_test holds the tests of the deployment: the CloudFormation template (infra/cdk-template.yaml), the
// node user-data it embeds (infra/user-data.sh) and the release packaging (packaging/package.sh).
//
// The template tests read the YAML as CloudFormation does (short-form intrinsics such as !Ref become their
// long form) and hold the security properties the deployment promises. The user-data tests run the script for
// real, with bash, in a scratch root, against moto's S3 and a local HTTPS server standing in for the RDS CA
// bundle.
package infra_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const (
	templatePath = "cdk-template.yaml"
	userDataPath = "user-data.sh"
)

var update = flag.Bool("update", false, "rewrite the user-data embedded in cdk-template.yaml from user-data.sh")

// template is a parsed CloudFormation template in long form: maps, lists, scalars, and intrinsic functions as
// one-key maps ({"Ref": "X"}, {"Fn::GetAtt": ["R", "Attr"]}, {"Fn::Sub": ...}).
type template struct {
	Parameters map[string]map[string]any
	Rules      map[string]map[string]any
	Conditions map[string]any
	Mappings   map[string]any
	Resources  map[string]resource
	Outputs    map[string]map[string]any
}

type resource struct {
	Type       string
	Condition  string
	Properties map[string]any
	Attrs      map[string]any // everything beside Properties: CreationPolicy, UpdatePolicy, DeletionPolicy, Metadata
}

func loadTemplate(t testing.TB) *template {
	t.Helper()
	data, err := os.ReadFile(templatePath)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := parseCFN(data)
	if err != nil {
		t.Fatalf("parse %s: %v", templatePath, err)
	}
	top, ok := doc.(map[string]any)
	if !ok {
		t.Fatalf("%s: top level is %T, not a map", templatePath, doc)
	}
	tpl := &template{
		Parameters: map[string]map[string]any{},
		Rules:      map[string]map[string]any{},
		Conditions: asMap(top["Conditions"]),
		Mappings:   asMap(top["Mappings"]),
		Resources:  map[string]resource{},
		Outputs:    map[string]map[string]any{},
	}
	for name, p := range asMap(top["Parameters"]) {
		tpl.Parameters[name] = asMap(p)
	}
	for name, r := range asMap(top["Rules"]) {
		tpl.Rules[name] = asMap(r)
	}
	for name, o := range asMap(top["Outputs"]) {
		tpl.Outputs[name] = asMap(o)
	}
	for name, r := range asMap(top["Resources"]) {
		m := asMap(r)
		res := resource{Properties: asMap(m["Properties"]), Attrs: map[string]any{}}
		res.Type, _ = m["Type"].(string)
		res.Condition, _ = m["Condition"].(string)
		for k, v := range m {
			if k != "Type" && k != "Condition" && k != "Properties" {
				res.Attrs[k] = v
			}
		}
		if res.Type == "" {
			t.Fatalf("resource %s has no Type", name)
		}
		tpl.Resources[name] = res
	}
	return tpl
}

// parseCFN decodes CloudFormation YAML, turning short-form intrinsic tags into their long form.
func parseCFN(data []byte) (any, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(data, &n); err != nil {
		return nil, err
	}
	return cfnValue(&n)
}

func cfnValue(n *yaml.Node) (any, error) {
	var v any
	switch n.Kind {
	case yaml.DocumentNode:
		return cfnValue(n.Content[0])
	case yaml.AliasNode:
		return cfnValue(n.Alias)
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			val, err := cfnValue(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			m[n.Content[i].Value] = val
		}
		v = m
	case yaml.SequenceNode:
		l := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			val, err := cfnValue(c)
			if err != nil {
				return nil, err
			}
			l = append(l, val)
		}
		v = l
	case yaml.ScalarNode:
		if strings.HasPrefix(n.Tag, "!!") || n.Tag == "" {
			if err := n.Decode(&v); err != nil {
				return nil, fmt.Errorf("line %d: %w", n.Line, err)
			}
			return v, nil
		}
		v = n.Value
	}
	if !strings.HasPrefix(n.Tag, "!") || strings.HasPrefix(n.Tag, "!!") {
		return v, nil
	}
	switch fn := strings.TrimPrefix(n.Tag, "!"); fn {
	case "Ref", "Condition":
		return map[string]any{fn: v}, nil
	case "GetAtt":
		if s, ok := v.(string); ok {
			res, attr, _ := strings.Cut(s, ".")
			return map[string]any{"Fn::GetAtt": []any{res, attr}}, nil
		}
		return map[string]any{"Fn::GetAtt": v}, nil
	default:
		return map[string]any{"Fn::" + fn: v}, nil
	}
}

// ---- small accessors over the generic tree ---------------------------------------------------------------------

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	if m == nil {
		return map[string]any{}
	}
	return m
}

func asList(v any) []any {
	switch l := v.(type) {
	case []any:
		return l
	case nil:
		return nil
	default:
		return []any{v}
	}
}

// get walks nested maps by key.
func get(v any, keys ...string) any {
	for _, k := range keys {
		v = asMap(v)[k]
	}
	return v
}

// ref returns the target of {"Ref": X}, or "".
func ref(v any) string {
	s, _ := asMap(v)["Ref"].(string)
	if len(asMap(v)) != 1 {
		return ""
	}
	return s
}

// getAtt returns resource and attribute of {"Fn::GetAtt": [R, A]}.
func getAtt(v any) (string, string) {
	l := asList(asMap(v)["Fn::GetAtt"])
	if len(l) != 2 || len(asMap(v)) != 1 {
		return "", ""
	}
	r, _ := l[0].(string)
	a, _ := l[1].(string)
	return r, a
}

// ifBranches returns both branches of {"Fn::If": [cond, a, b]}, or v itself.
func ifBranches(v any) []any {
	l := asList(asMap(v)["Fn::If"])
	if len(l) == 3 && len(asMap(v)) == 1 {
		return append(ifBranches(l[1]), ifBranches(l[2])...)
	}
	return []any{v}
}

// ofType returns the logical ids of the resources of a type, sorted.
func (tpl *template) ofType(typ string) []string {
	var ids []string
	for id, r := range tpl.Resources {
		if r.Type == typ {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

func (tpl *template) mustResource(t testing.TB, id, typ string) resource {
	t.Helper()
	r, ok := tpl.Resources[id]
	if !ok {
		t.Fatalf("no resource %s", id)
	}
	if r.Type != typ {
		t.Fatalf("resource %s is a %s, want %s", id, r.Type, typ)
	}
	return r
}

// ---- the user-data the template embeds -------------------------------------------------------------------------

// nodeUserData returns the two parts of the node launch template's user-data: the header (a Fn::Sub string with
// its variable map) and the script body, embedded verbatim.
func nodeUserData(t testing.TB, tpl *template) (header string, vars map[string]any, body string) {
	t.Helper()
	lt := tpl.mustResource(t, "ChainlinkNodeLaunchTemplate", "AWS::EC2::LaunchTemplate")
	join := asList(get(lt.Properties, "LaunchTemplateData", "UserData", "Fn::Base64", "Fn::Join"))
	if len(join) != 2 || join[0] != "" {
		t.Fatalf("node UserData must be Fn::Base64 of Fn::Join ['', [header, body]], got %v", join)
	}
	parts := asList(join[1])
	if len(parts) != 2 {
		t.Fatalf("node UserData must join exactly a header and a body, got %d parts", len(parts))
	}
	sub := asList(get(parts[0], "Fn::Sub"))
	if len(sub) != 2 {
		t.Fatalf("the user-data header must be Fn::Sub [string, variables], got %v", parts[0])
	}
	header, _ = sub[0].(string)
	vars = asMap(sub[1])
	body, ok := parts[1].(string)
	if !ok {
		t.Fatalf("the user-data body must be a literal string, got %T", parts[1])
	}
	return header, vars, body
}

// scriptBody is user-data.sh without its shebang line: the part the template embeds.
func scriptBody(t testing.TB) string {
	t.Helper()
	data, err := os.ReadFile(userDataPath)
	if err != nil {
		t.Fatal(err)
	}
	first, rest, ok := strings.Cut(string(data), "\n")
	if !ok || !strings.HasPrefix(first, "#!") {
		t.Fatalf("%s must start with a shebang line", userDataPath)
	}
	return rest
}

var subRef = regexp.MustCompile(`\$\{([^}]*)\}`)

// substitute evaluates a Fn::Sub string: ${Name} from values (which must hold every name used), ${!Literal} as
// ${Literal}.
func substitute(s string, values map[string]string) (string, error) {
	var missing []string
	out := subRef.ReplaceAllStringFunc(s, func(m string) string {
		name := m[2 : len(m)-1]
		if strings.HasPrefix(name, "!") {
			return "${" + name[1:] + "}"
		}
		v, ok := values[name]
		if !ok {
			missing = append(missing, name)
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("no value for %s", strings.Join(missing, ", "))
	}
	return out, nil
}

// embedMarker is the first line of the body; -update finds the embedded copy in the template by it.
const embedMarker = "# cl-agent node bootstrap: infra/user-data.sh"

// rewriteEmbeddedBody replaces the embedded body in the template text with body, keeping its indentation.
func rewriteEmbeddedBody(tplText, body string) (string, error) {
	lines := strings.Split(tplText, "\n")
	start := -1
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimLeft(l, " "), embedMarker) {
			start = i
			break
		}
	}
	if start < 0 {
		return "", fmt.Errorf("marker %q not found in the template", embedMarker)
	}
	indent := lines[start][:len(lines[start])-len(strings.TrimLeft(lines[start], " "))]
	end := start
	for end < len(lines) && (strings.HasPrefix(lines[end], indent) || strings.TrimSpace(lines[end]) == "") {
		end++
	}
	// Blank lines at the end of the block belong to what follows it.
	for end > start && strings.TrimSpace(lines[end-1]) == "" {
		end--
	}
	var repl []string
	for _, l := range strings.Split(strings.TrimSuffix(body, "\n"), "\n") {
		if l == "" {
			repl = append(repl, "")
		} else {
			repl = append(repl, indent+l)
		}
	}
	out := append(slices.Clone(lines[:start]), repl...)
	out = append(out, lines[end:]...)
	return strings.Join(out, "\n"), nil
}

func TestUserDataEmbedsTheScriptVerbatim(t *testing.T) {
	body := scriptBody(t)
	if *update {
		data, err := os.ReadFile(templatePath)
		if err != nil {
			t.Fatal(err)
		}
		out, err := rewriteEmbeddedBody(string(data), body)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(templatePath, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tpl := loadTemplate(t)
	_, _, embedded := nodeUserData(t, tpl)
	if embedded != body {
		t.Fatalf("the user-data embedded in %s differs from %s (without its shebang line); run\n"+
			"  go test ./infra -run TestUserDataEmbedsTheScriptVerbatim -update\nfirst difference: %s",
			templatePath, userDataPath, firstDiff(embedded, body))
	}
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < max(len(al), len(bl)); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("line %d of the body: template %q, script %q", i+1, x, y)
		}
	}
	return "none"
}

var (
	headerAssign   = regexp.MustCompile(`(?m)^([A-Z][A-Z0-9_]*)='`)
	scriptRequires = regexp.MustCompile(`"\$\{([A-Z][A-Z0-9_]*):?\?\}"`)
)

// TestUserDataHeaderSetsWhatTheScriptRequires: every setting the script insists on (": "${NAME:?}"") is assigned
// by the header, and the header assigns nothing the script does not read.
func TestUserDataHeaderSetsWhatTheScriptRequires(t *testing.T) {
	tpl := loadTemplate(t)
	header, vars, body := nodeUserData(t, tpl)

	var assigned, required []string
	for _, m := range headerAssign.FindAllStringSubmatch(header, -1) {
		assigned = append(assigned, m[1])
	}
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, ": ") {
			continue
		}
		for _, m := range scriptRequires.FindAllStringSubmatch(line, -1) {
			required = append(required, m[1])
		}
	}
	slices.Sort(assigned)
	slices.Sort(required)
	if len(required) == 0 || !slices.Equal(assigned, required) {
		t.Fatalf("header assigns %v\nscript requires %v", assigned, required)
	}
	if !strings.HasPrefix(header, "#!/bin/bash\n") {
		t.Fatalf("the header must start with the shebang")
	}
	if strings.Contains(header, "{{resolve:") || strings.Contains(body, "{{resolve:") {
		t.Fatalf("the user-data must not resolve secrets")
	}
	// Every ${Name} in the header is a parameter, a pseudo parameter, a resource (attribute) or a Sub variable.
	for _, m := range subRef.FindAllStringSubmatch(header, -1) {
		name := m[1]
		res, _, _ := strings.Cut(name, ".")
		_, isParam := tpl.Parameters[name]
		_, isRes := tpl.Resources[res]
		_, isVar := vars[name]
		if !isParam && !isRes && !isVar && !strings.HasPrefix(name, "AWS::") {
			t.Errorf("the header uses ${%s}, which the template does not define", name)
		}
		if isParam && tpl.Parameters[name]["NoEcho"] != nil {
			t.Errorf("the header uses NoEcho parameter %s", name)
		}
	}
	// Every value is single-quoted in the header: a parameter that reaches it must not be able to hold a quote.
	for _, m := range subRef.FindAllStringSubmatch(header, -1) {
		p, ok := tpl.Parameters[m[1]]
		if !ok || p["AllowedValues"] != nil || p["Type"] == "Number" {
			continue
		}
		pat, _ := p["AllowedPattern"].(string)
		if pat == "" {
			t.Errorf("parameter %s reaches the user-data header without an AllowedPattern", m[1])
			continue
		}
		if re := regexp.MustCompile(pat); re.MatchString("a'b") || re.MatchString("wss://a'b") ||
			re.MatchString("https://a'b") || re.MatchString("a'b@c") {
			t.Errorf("parameter %s (pattern %s) admits a single quote into the user-data header", m[1], pat)
		}
	}
}

func TestUpdateRewritesOnlyTheEmbeddedBlock(t *testing.T) {
	tplText := "a:\n  - |\n    " + embedMarker + " x\n    old\n\n    older\n\nb: 1\n"
	got, err := rewriteEmbeddedBody(tplText, embedMarker+" x\nnew\n\n  indented\n")
	if err != nil {
		t.Fatal(err)
	}
	want := "a:\n  - |\n    " + embedMarker + " x\n    new\n\n      indented\n\nb: 1\n"
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

// repoRoot is the module root, one level up from infra/.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}
