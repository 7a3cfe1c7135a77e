package main

import (
	"strings"
	"testing"
)

// FuzzConfigFile hands arbitrary text to the config file reader: it must
// never panic, and every error must name the file and a line, as the
// contract says every config file error does.
func FuzzConfigFile(f *testing.F) {
	for _, seed := range []string{
		"addr = \"localhost:1\"\nmax_conns = 5\n",
		"[[api_keys]]\nname = \"b\"\nscopes = [\"publish\"]\nsecret_env = \"X\"\n",
		"allowed_origins = [\"https://a\", 'b']\n# comment\n",
		"max_conns = 0x10\nclient_message_rate = 1.5e1\n",
		"a.b.c = 1\n[t]\n",
		"addr = \"\"\"\nmulti\n\"\"\"\n",
		"addr = {x = 1}\n",
		"x = [1, [2]]\n",
		"\xff\xfe = 1\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		var c config
		c.sources = map[string]string{}
		err := c.applyFile("fuzz.toml", []byte(text), settings())
		if err != nil && !strings.HasPrefix(err.Error(), "fuzz.toml:") {
			t.Fatalf("error without file and line: %v", err)
		}
	})
}
