// Package plan9 holds the Plan 9 conventions shared by all of cheshire: dial strings, rc-style quoting and tokenizing, namespace files (namespace(6)), the standard 9P error strings and their mapping to Unix errno values, and permission-string formatting.
package plan9
