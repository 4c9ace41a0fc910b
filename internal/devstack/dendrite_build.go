package devstack

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

const (
	modulePath     = "github.com/dmbridge/dmbridge"
	toolsDir       = "tools/dendrite"
	dendriteModule = "github.com/element-hq/dendrite"
)

// DendriteBinaries are the two Dendrite executables a stack runs.
type DendriteBinaries struct {
	Dendrite     string
	GenerateKeys string
	Version      string
}

// CacheDir is where built homeserver binaries are kept between runs:
// $DMBRIDGE_CACHE, else $XDG_CACHE_HOME/dmbridge, else ~/.cache/dmbridge.
func CacheDir() (string, error) {
	if dir := os.Getenv("DMBRIDGE_CACHE"); dir != "" {
		return dir, nil
	}
	if dir := os.Getenv("XDG_CACHE_HOME"); dir != "" {
		return filepath.Join(dir, "dmbridge"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory: set DMBRIDGE_CACHE: %w", err)
	}
	return filepath.Join(home, ".cache", "dmbridge"), nil
}

// LocateDendrite says where the binaries of the pinned Dendrite version
// are (or will be) cached, and whether they are there already.
func LocateDendrite() (DendriteBinaries, bool, error) {
	root, err := RepoRoot()
	if err != nil {
		return DendriteBinaries{}, false, err
	}
	// The version comes from the tools module rather than a constant here
	// so that bumping Dendrite there automatically invalidates the cache.
	version, err := requiredVersion(filepath.Join(root, toolsDir, "go.mod"), dendriteModule)
	if err != nil {
		return DendriteBinaries{}, false, err
	}
	cache, err := CacheDir()
	if err != nil {
		return DendriteBinaries{}, false, err
	}
	target := filepath.Join(cache, "bin", "dendrite-"+version)
	bins := DendriteBinaries{
		Dendrite:     filepath.Join(target, "dendrite"),
		GenerateKeys: filepath.Join(target, "generate-keys"),
		Version:      version,
	}
	return bins, bins.present(), nil
}

// EnsureDendrite returns the cached Dendrite binaries, building them from
// the module proxy first if needed (a few minutes on a cold cache).
// onBuild, if set, is called before a build starts, so a caller can say
// why it is slow.
func EnsureDendrite(ctx context.Context, onBuild func(version string)) (DendriteBinaries, error) {
	bins, ok, err := LocateDendrite()
	if err != nil || ok {
		return bins, err
	}
	target := filepath.Dir(bins.Dendrite)
	binDir := filepath.Dir(target)
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return bins, err
	}
	// Several processes (test binaries, a demo) may want it at once; only
	// one of them should spend minutes building while the others wait.
	unlock, err := lockFile(filepath.Join(filepath.Dir(binDir), "dendrite-"+bins.Version+".lock"))
	if err != nil {
		return bins, err
	}
	defer unlock()
	if bins.present() {
		return bins, nil
	}
	if onBuild != nil {
		onBuild(bins.Version)
	}
	// Build into a scratch directory and rename it into place, so a build
	// killed half-way never leaves something that looks complete.
	scratch, err := os.MkdirTemp(binDir, ".build-")
	if err != nil {
		return bins, err
	}
	defer os.RemoveAll(scratch)
	root, err := RepoRoot()
	if err != nil {
		return bins, err
	}
	if err := goBuild(ctx, filepath.Join(root, toolsDir), bins.Version, scratch); err != nil {
		return bins, err
	}
	if err := os.RemoveAll(target); err != nil {
		return bins, err
	}
	// MkdirTemp creates the directory private; the binaries are not secret.
	if err := os.Chmod(scratch, 0o755); err != nil {
		return bins, err
	}
	if err := os.Rename(scratch, target); err != nil {
		return bins, err
	}
	if !bins.present() {
		return bins, fmt.Errorf("dendrite build finished but %s is incomplete", target)
	}
	return bins, nil
}

func (b DendriteBinaries) present() bool {
	for _, p := range []string{b.Dendrite, b.GenerateKeys} {
		st, err := os.Stat(p)
		if err != nil || !st.Mode().IsRegular() || st.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

func goBuild(ctx context.Context, toolsPath, version, outDir string) error {
	build := func() ([]byte, error) {
		return runGo(ctx, toolsPath, "build", "-o", outDir+string(filepath.Separator),
			dendriteModule+"/cmd/dendrite", dendriteModule+"/cmd/generate-keys")
	}
	out, err := build()
	if err == nil {
		return nil
	}
	// A fresh checkout may have an incomplete go.sum for the tools module;
	// resolving the module once fills it in, after which the build is retried.
	if ctx.Err() != nil || (!bytes.Contains(out, []byte("go.sum")) && !bytes.Contains(out, []byte("go get")) &&
		!bytes.Contains(out, []byte("go mod download"))) {
		return fmt.Errorf("building dendrite %s: %w\n%s", version, err, out)
	}
	if out2, err2 := runGo(ctx, toolsPath, "get", dendriteModule+"@"+version); err2 != nil {
		return fmt.Errorf("resolving dendrite %s: %w\n%s\n(first build attempt said:)\n%s", version, err2, out2, out)
	}
	if out, err = build(); err != nil {
		return fmt.Errorf("building dendrite %s: %w\n%s", version, err, out)
	}
	return nil
}

func runGo(ctx context.Context, dir string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	// GOWORK=off keeps a developer's go.work from dragging the bridge module
	// into the tools build; -mod=mod lets go fill in go.sum as it goes.
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	return cmd.CombinedOutput()
}

// lockFile takes an exclusive advisory lock, waiting for it as long as it
// takes: the holder is a build that will finish (or die, which releases
// the lock).
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		_ = f.Close()
	}, nil
}

// RepoRoot walks up from the working directory (a package directory under
// go test, the checkout for the demo) to the bridge's own go.mod. Checking
// the module line matters because tools/dendrite has a go.mod of its own
// on the way up.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if mod, err := moduleName(filepath.Join(dir, "go.mod")); err == nil && mod == modulePath {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod for module %s above the working directory", modulePath)
		}
		dir = parent
	}
}

func moduleName(goMod string) (string, error) {
	f, err := os.Open(goMod)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "module" {
			return strings.Trim(fields[1], `"`), nil
		}
	}
	return "", fmt.Errorf("%s has no module line", goMod)
}

// requiredVersion finds the version of module in a go.mod's require
// lines, both the single-line and the block form.
func requiredVersion(goMod, module string) (string, error) {
	data, err := os.ReadFile(goMod)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) > 0 && fields[0] == "require" {
			fields = fields[1:]
		}
		if len(fields) >= 2 && fields[0] == module {
			return fields[1], nil
		}
	}
	return "", fmt.Errorf("%s does not require %s", goMod, module)
}
