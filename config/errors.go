package config

import (
	"fmt"
	"strconv"
	"strings"
)

// Error is a problem with one key of the config file. Its text is a single
// line, "file: key: what is wrong", because the bridge prints it as the only
// output before exiting.
type Error struct {
	File string
	// Key is the dotted path, e.g. "appservice.port"; empty for problems
	// with the file as a whole (syntax errors).
	Key string
	// Line is the 1-based line in File, or 0 when unknown or not applicable.
	Line    int
	Message string
}

func (e *Error) Error() string {
	var sb strings.Builder
	sb.WriteString(orDefault(e.File, "config"))
	sb.WriteString(": ")
	if e.Key != "" {
		sb.WriteString(e.Key)
		sb.WriteString(": ")
	}
	sb.WriteString(e.Message)
	if e.Line > 0 {
		fmt.Fprintf(&sb, " (line %d)", e.Line)
	}
	return sb.String()
}

// Warning is a non-fatal remark about the config file, such as an unknown
// key; the caller decides how to log it.
type Warning struct {
	File    string
	Key     string
	Line    int
	Message string
}

func (w Warning) String() string {
	e := Error(w)
	return e.Error()
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// joinKey appends a struct field name to a dotted key path.
func joinKey(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

// joinMapKey appends a user-chosen map key (a server name, a user id) to a
// key path, quoting it when it would otherwise be misread as more path
// segments.
func joinMapKey(parent, key string) string {
	if key == "" || strings.ContainsAny(key, ". \t\"'[]") {
		key = strconv.Quote(key)
	}
	return joinKey(parent, key)
}
