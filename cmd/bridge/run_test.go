package main

import (
	"bytes"
	"testing"
)

func TestRunVersionDefault(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--version"}, &stdout, &stderr); code != 0 || stdout.String() != "dmbridge 0.1.0\n" {
		t.Errorf("exit %d, %q (stderr %q)", code, stdout.String(), stderr.String())
	}
}

func TestParseFlagsShortAndLong(t *testing.T) {
	for _, args := range [][]string{
		{"-c", "a.yaml", "-r", "b.yaml", "-g"},
		{"--config", "a.yaml", "--registration=b.yaml", "--generate-registration"},
	} {
		opts, err := parseFlags(args, &bytes.Buffer{})
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if opts.configPath != "a.yaml" || opts.registrationPath != "b.yaml" || !opts.generate {
			t.Errorf("%v: %+v", args, opts)
		}
	}
	opts, err := parseFlags(nil, &bytes.Buffer{})
	if err != nil || opts.configPath != "config.yaml" || opts.registrationPath != "registration.yaml" {
		t.Errorf("defaults: %+v, %v", opts, err)
	}
}
