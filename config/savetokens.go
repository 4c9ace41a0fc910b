package config

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// tokenKeys are the keys SaveTokens writes, under "appservice".
var tokenKeys = [...]string{"as_token", "hs_token"}

// SaveTokens writes appservice.as_token and appservice.hs_token back into the
// file at c.Path, keeping everything else (comments, blank lines, quoting,
// order) as it was, and leaves the file with mode 0600 since it now holds
// secrets.
//
// The edit is made on the yaml.Node tree. In the usual layout (each token on
// one line, or absent from a block-style appservice section) the new text is
// spliced in at the nodes' positions so the file stays byte-identical
// elsewhere; otherwise (block scalars, escapes, flow style) the edited tree
// is re-encoded, which keeps comments but may drop blank lines and reindent.
// Either way the result is re-parsed and compared with the edited tree
// before anything is written.
func (c *Config) SaveTokens() error {
	for _, k := range tokenKeys {
		if variable, ok := c.envKeys["appservice."+k]; ok {
			return fmt.Errorf("%s: appservice.%s comes from $%s, which would override the token saved in the file; "+
				"unset it while generating the registration", c.Path, k, variable)
		}
	}
	if c.Appservice.ASToken == "" || c.Appservice.HSToken == "" {
		return fmt.Errorf("%s: no tokens to save; call GenerateRegistration first", c.Path)
	}
	orig, err := os.ReadFile(c.Path)
	if err != nil {
		return fmt.Errorf("%s: reading config to save tokens: %w", c.Path, err)
	}
	updated, err := replaceTokens(orig, map[string]string{
		"as_token": c.Appservice.ASToken,
		"hs_token": c.Appservice.HSToken,
	})
	if err != nil {
		return fmt.Errorf("%s: saving tokens: %w", c.Path, err)
	}
	if err := writeFileAtomic(c.Path, updated, 0o600); err != nil {
		return fmt.Errorf("%s: saving tokens: %w", c.Path, err)
	}
	return nil
}

// SavePickleKey generates encryption.pickle_key and writes it into the file
// like SaveTokens, unless the config has one: the key that encrypts the
// stored Olm/Megolm keys is made once, since a new one would make the stored
// keys unreadable.
func (c *Config) SavePickleKey() error {
	if c.Encryption.PickleKey != "" {
		return nil
	}
	orig, err := os.ReadFile(c.Path)
	if err != nil {
		return fmt.Errorf("%s: reading config to save the pickle key: %w", c.Path, err)
	}
	key := randomSecret()
	updated, err := replaceKeys(orig, "encryption", []string{"pickle_key"}, map[string]string{"pickle_key": key})
	if err != nil {
		return fmt.Errorf("%s: saving encryption.pickle_key: %w", c.Path, err)
	}
	if err := writeFileAtomic(c.Path, updated, 0o600); err != nil {
		return fmt.Errorf("%s: saving encryption.pickle_key: %w", c.Path, err)
	}
	c.Encryption.PickleKey = key
	return nil
}

// replaceTokens returns orig with appservice.<key> set to each value.
func replaceTokens(orig []byte, values map[string]string) ([]byte, error) {
	return replaceKeys(orig, "appservice", tokenKeys[:], values)
}

// randomSecret is 32 random bytes, base64url-encoded.
func randomSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Errorf("no randomness: %w", err))
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// replaceKeys returns orig with section.<key> set to each value.
func replaceKeys(orig []byte, section string, keys []string, values map[string]string) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(orig, &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) == 0 {
		doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode, Tag: "!!map"}}}
	}
	root := resolveAlias(doc.Content[0])
	if root.Kind != yaml.MappingNode {
		return nil, errors.New("top level is not a mapping")
	}
	as := ensureMapping(root, section)
	if as == nil {
		return nil, fmt.Errorf("%s is not a mapping", section)
	}

	var edits []splice
	var missing []string
	spliceable := true
	for _, k := range keys {
		keyNode, valueNode := lookupKey(as, k)
		if valueNode == nil {
			missing = append(missing, k)
			continue
		}
		if e, ok := planSplice(orig, keyNode, valueNode, values[k]); ok {
			edits = append(edits, e)
		} else {
			spliceable = false
		}
		setScalar(valueNode, values[k])
	}
	if len(missing) > 0 {
		if e, ok := planInsert(orig, as, missing, values); ok {
			edits = append(edits, e)
		} else {
			for _, k := range missing {
				as.Content = append(as.Content, scalar(k), scalar(values[k]))
			}
			spliceable = false
		}
	}

	if spliceable {
		out := applySplices(orig, edits)
		if sameTree(out, &doc) {
			return out, nil
		}
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	if !sameTree(buf.Bytes(), &doc) {
		return nil, errors.New("re-encoded config does not round-trip")
	}
	return buf.Bytes(), nil
}

// ensureMapping returns the mapping under key, adding an empty one if absent.
func ensureMapping(parent *yaml.Node, key string) *yaml.Node {
	_, v := lookupKey(parent, key)
	if v == nil || isNull(v) {
		m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		if v == nil {
			parent.Content = append(parent.Content, scalar(key), m)
		} else {
			*v = *m
		}
		return m
	}
	v = resolveAlias(v)
	if v.Kind != yaml.MappingNode {
		return nil
	}
	return v
}

func lookupKey(mapping *yaml.Node, key string) (keyNode, value *yaml.Node) {
	for i := 0; i+1 < len(mapping.Content); i += 2 {
		if mapping.Content[i].Value == key {
			return mapping.Content[i], mapping.Content[i+1]
		}
	}
	return nil, nil
}

func scalar(value string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: value}
}

// setScalar keeps the node's quoting style, anchor and comments but not a
// block style, which would not fit a token.
func setScalar(n *yaml.Node, value string) {
	style := n.Style & (yaml.DoubleQuotedStyle | yaml.SingleQuotedStyle)
	n.Kind, n.Tag, n.Value, n.Style = yaml.ScalarNode, "!!str", value, style
	n.Content, n.Alias = nil, nil
}

// splice replaces orig[start:end] with text.
type splice struct {
	start, end int
	text       string
}

// planSplice finds the byte range of a one-line scalar value and what to put
// there instead. ok is false whenever the layout is anything unusual; the
// caller then falls back to re-encoding.
func planSplice(orig []byte, keyNode, valueNode *yaml.Node, value string) (splice, bool) {
	if valueNode.Kind != yaml.ScalarNode || valueNode.Line != keyNode.Line {
		return splice{}, false
	}
	start, ok := byteOffset(orig, valueNode.Line, valueNode.Column)
	if !ok {
		return splice{}, false
	}
	rest := orig[start:]
	switch valueNode.Style {
	case 0:
		if isNull(valueNode) && valueNode.Value == "" {
			// "as_token:" with nothing after it: the node sits right
			// after the colon.
			return splice{start, start, " " + value}, true
		}
		if !bytes.HasPrefix(rest, []byte(valueNode.Value)) {
			return splice{}, false
		}
		return splice{start, start + len(valueNode.Value), value}, true
	case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		quote := `"`
		if valueNode.Style == yaml.SingleQuotedStyle {
			quote = `'`
		}
		// Only values without escapes, where the source text is exactly
		// quote+value+quote; anything else is left to the re-encoder.
		raw := quote + valueNode.Value + quote
		if strings.ContainsAny(valueNode.Value, `\'"`) || !bytes.HasPrefix(rest, []byte(raw)) {
			return splice{}, false
		}
		return splice{start, start + len(raw), quote + value + quote}, true
	default:
		return splice{}, false
	}
}

// planInsert adds the missing keys to the mapping right after its first
// "key: value" line, in the tree and as a text splice, so the new lines get
// the mapping's indentation and do not separate a comment from the key it
// documents.
func planInsert(orig []byte, mapping *yaml.Node, keys []string, values map[string]string) (splice, bool) {
	if mapping.Style&yaml.FlowStyle != 0 {
		return splice{}, false
	}
	for i := 0; i+1 < len(mapping.Content); i += 2 {
		k, v := mapping.Content[i], mapping.Content[i+1]
		if v.Kind != yaml.ScalarNode || v.Line != k.Line || v.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
			continue
		}
		lineStart, ok := byteOffset(orig, k.Line, 1)
		keyStart, ok2 := byteOffset(orig, k.Line, k.Column)
		if !ok || !ok2 || len(bytes.TrimLeft(orig[lineStart:keyStart], " ")) != 0 {
			continue
		}
		indent := string(orig[lineStart:keyStart])
		var text string
		added := make([]*yaml.Node, 0, 2*len(keys))
		for _, key := range keys {
			text += indent + key + ": " + values[key] + "\n"
			added = append(added, scalar(key), scalar(values[key]))
		}
		at := len(orig)
		if nl := bytes.IndexByte(orig[keyStart:], '\n'); nl >= 0 {
			at = keyStart + nl + 1
		} else {
			text = "\n" + text
		}
		mapping.Content = slices.Insert(mapping.Content, i+2, added...)
		return splice{at, at, text}, true
	}
	return splice{}, false
}

// byteOffset converts yaml.v3's 1-based line and rune column to a byte
// offset in data.
func byteOffset(data []byte, line, column int) (int, bool) {
	off := 0
	for l := 1; l < line; l++ {
		i := bytes.IndexByte(data[off:], '\n')
		if i < 0 {
			return 0, false
		}
		off += i + 1
	}
	for col := 1; col < column; col++ {
		if off >= len(data) || data[off] == '\n' {
			return 0, false
		}
		_, size := utf8.DecodeRune(data[off:])
		off += size
	}
	return off, true
}

func applySplices(orig []byte, edits []splice) []byte {
	out := make([]byte, 0, len(orig)+256)
	last := 0
	slices.SortStableFunc(edits, func(a, b splice) int { return a.start - b.start })
	for _, e := range edits {
		out = append(out, orig[last:e.start]...)
		out = append(out, e.text...)
		last = e.end
	}
	return append(out, orig[last:]...)
}

// sameTree reports whether data parses to the same content as want,
// ignoring positions, styles and comments.
func sameTree(data []byte, want *yaml.Node) bool {
	var got yaml.Node
	if err := yaml.Unmarshal(data, &got); err != nil {
		return false
	}
	return nodesEqual(&got, want)
}

func nodesEqual(a, b *yaml.Node) bool {
	a, b = resolveAlias(a), resolveAlias(b)
	if a.Kind != b.Kind || a.Value != b.Value || a.ShortTag() != b.ShortTag() || len(a.Content) != len(b.Content) {
		return false
	}
	for i := range a.Content {
		if !nodesEqual(a.Content[i], b.Content[i]) {
			return false
		}
	}
	return true
}
