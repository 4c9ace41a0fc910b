package tesths

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

const (
	modulePath     = "github.com/dmbridge/dmbridge"
	toolsDir       = "tools/dendrite"
	dendriteModule = "github.com/element-hq/dendrite"
)

// binaries are the paths of the two Dendrite executables the harness runs.
type binaries struct {
	dendrite     string
	generateKeys string
}

// The binaries only have to be located (and maybe built) once per test
// process; every later Start reuses the answer. Holding the error as well
// means a failed build is reported to every test instead of being retried
// for each one, which would multiply a three-minute failure.
var (
	buildOnce   sync.Once
	buildResult binaries
	buildErr    error
)

func ensureBinaries() (binaries, error) {
	buildOnce.Do(func() { buildResult, buildErr = locateOrBuild() })
	return buildResult, buildErr
}

// CacheDir is where built homeserver binaries are kept between test runs:
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

func locateOrBuild() (binaries, error) {
	root, err := repoRoot()
	if err != nil {
		return binaries{}, err
	}
	tools := filepath.Join(root, toolsDir)
	// The version comes from the tools module rather than a constant here so
	// that bumping Dendrite there automatically invalidates the cache.
	version, err := requiredVersion(filepath.Join(tools, "go.mod"), dendriteModule)
	if err != nil {
		return binaries{}, err
	}
	cache, err := CacheDir()
	if err != nil {
		return binaries{}, err
	}
	binDir := filepath.Join(cache, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return binaries{}, err
	}
	target := filepath.Join(binDir, "dendrite-"+version)
	bins := binaries{
		dendrite:     filepath.Join(target, "dendrite"),
		generateKeys: filepath.Join(target, "generate-keys"),
	}
	if bins.present() {
		return bins, nil
	}

	// Several test binaries (one per package) may start at once; only one of
	// them should spend minutes building while the others wait for it.
	unlock, err := lockFile(filepath.Join(cache, "dendrite-"+version+".lock"))
	if err != nil {
		return binaries{}, err
	}
	defer unlock()
	if bins.present() {
		return bins, nil
	}

	// Build into a scratch directory and rename it into place, so a build
	// killed half-way never leaves something that looks complete.
	scratch, err := os.MkdirTemp(binDir, ".build-")
	if err != nil {
		return binaries{}, err
	}
	defer os.RemoveAll(scratch)
	if err := goBuild(tools, version, scratch); err != nil {
		return binaries{}, err
	}
	if err := os.RemoveAll(target); err != nil {
		return binaries{}, err
	}
	// MkdirTemp creates the directory private; the binaries are not secret.
	if err := os.Chmod(scratch, 0o755); err != nil {
		return binaries{}, err
	}
	if err := os.Rename(scratch, target); err != nil {
		return binaries{}, err
	}
	if !bins.present() {
		return binaries{}, fmt.Errorf("dendrite build finished but %s is incomplete", target)
	}
	return bins, nil
}

func (b binaries) present() bool {
	for _, p := range []string{b.dendrite, b.generateKeys} {
		st, err := os.Stat(p)
		if err != nil || !st.Mode().IsRegular() || st.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

func goBuild(toolsPath, version, outDir string) error {
	build := func() ([]byte, error) {
		return runGo(toolsPath, "build", "-o", outDir+string(filepath.Separator),
			dendriteModule+"/cmd/dendrite", dendriteModule+"/cmd/generate-keys")
	}
	out, err := build()
	if err == nil {
		return nil
	}
	// A fresh checkout may have an incomplete go.sum for the tools module;
	// resolving the module once fills it in, after which the build is retried.
	if !bytes.Contains(out, []byte("go.sum")) && !bytes.Contains(out, []byte("go get")) &&
		!bytes.Contains(out, []byte("go mod download")) {
		return fmt.Errorf("building dendrite %s: %w\n%s", version, err, out)
	}
	if out2, err2 := runGo(toolsPath, "get", dendriteModule+"@"+version); err2 != nil {
		return fmt.Errorf("resolving dendrite %s: %w\n%s\n(first build attempt said:)\n%s", version, err2, out2, out)
	}
	if out, err = build(); err != nil {
		return fmt.Errorf("building dendrite %s: %w\n%s", version, err, out)
	}
	return nil
}

func runGo(dir string, args ...string) ([]byte, error) {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	// GOWORK=off keeps a developer's go.work from dragging the bridge module
	// into the tools build; -mod=mod lets go fill in go.sum as it goes.
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	return cmd.CombinedOutput()
}

// lockFile takes an exclusive advisory lock, waiting for it as long as it
// takes: the holder is a build that will finish (or die, which releases the
// lock).
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

// repoRoot walks up from the working directory (the package directory under
// go test) to the bridge's own go.mod. Checking the module line matters
// because tools/dendrite has a go.mod of its own on the way up.
func repoRoot() (string, error) {
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

// requiredVersion finds the version of module in a go.mod's require lines,
// both the single-line and the block form.
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

// EnsureDendrite builds the homeserver binaries if they are not cached yet
// and returns the path of the dendrite executable.
func EnsureDendrite() (string, error) {
	b, err := ensureBinaries()
	return b.dendrite, err
}
