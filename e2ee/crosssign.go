package e2ee

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/crypto"
)

// selfSign signs the ghost's new device with the ghost's cross-signing
// keys, so that clients see a device its owner vouches for rather than an
// unverified one. The first device of a ghost makes the keys and uploads
// them (Dendrite accepts an appservice ghost's upload without
// user-interactive auth, see TestGhostCrossSigningOnDendrite); they are
// kept, sealed with the pickle key, because the homeserver keeps the first
// upload: a later device of the ghost is signed with the same keys. A
// homeserver that refuses leaves the device unsigned, which still works.
func (m *Manager) selfSign(ctx context.Context, mach *crypto.OlmMachine) {
	userID := mach.Client.UserID
	err := m.loadCrossSigning(ctx, mach)
	if errors.Is(err, errNoCrossSigning) {
		err = m.newCrossSigning(ctx, mach)
	}
	if err == nil {
		err = mach.SignOwnDevice(ctx, mach.OwnIdentity())
	}
	if err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Stringer("user_id", userID).Msg("Could not cross-sign the ghost's device, leaving it unsigned")
	}
}

var errNoCrossSigning = errors.New("no stored cross-signing keys")

func (m *Manager) loadCrossSigning(ctx context.Context, mach *crypto.OlmMachine) error {
	sealed, err := m.o.DB.GhostDev.CrossSigning(ctx, mach.Client.UserID)
	if err != nil {
		return fmt.Errorf("load cross-signing keys: %w", err)
	} else if sealed == nil {
		return errNoCrossSigning
	}
	plain, err := m.open(purposeCrossSigning, sealed)
	if err != nil {
		return fmt.Errorf("open cross-signing keys: %w", err)
	}
	var seeds crypto.CrossSigningSeeds
	if err = json.Unmarshal(plain, &seeds); err != nil {
		return fmt.Errorf("decode cross-signing keys: %w", err)
	}
	return mach.ImportCrossSigningKeys(seeds)
}

func (m *Manager) newCrossSigning(ctx context.Context, mach *crypto.OlmMachine) error {
	keys, err := mach.GenerateCrossSigningKeys()
	if err != nil {
		return err
	}
	plain, err := json.Marshal(keys.Seeds())
	if err != nil {
		return err
	}
	sealed, err := m.seal(purposeCrossSigning, plain)
	if err != nil {
		return err
	}
	// Stored before the upload: keys the homeserver has but the bridge
	// lost could never sign another device.
	if err = m.o.DB.GhostDev.PutCrossSigning(ctx, mach.Client.UserID, sealed); err != nil {
		return fmt.Errorf("store cross-signing keys: %w", err)
	}
	return mach.PublishCrossSigningKeys(ctx, keys, nil)
}
