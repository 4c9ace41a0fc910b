package e2ee

import (
	"context"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/appservice"
)

// stateStore is the bridge's mautrix state store as the Olm machines see it.
// The store runs in bridge mode (IsBridge), whose FindSharedRooms reads
// mautrix bridgev2's portal table; this bridge's portal table is another,
// so the shared encrypted rooms are found from the stored room state.
type stateStore struct {
	*appservice.StateStore
}

// FindSharedRooms returns the encrypted rooms the user is in with the bridge.
func (s stateStore) FindSharedRooms(ctx context.Context, userID id.UserID) ([]id.RoomID, error) {
	rows, err := s.Query(ctx, `
		SELECT mx_user_profile.room_id FROM mx_user_profile
		JOIN mx_room_state ON mx_room_state.room_id=mx_user_profile.room_id
		WHERE mx_user_profile.user_id=$1 AND mx_room_state.encryption IS NOT NULL`, userID)
	return dbutil.NewRowIterWithError(rows, dbutil.ScanSingleColumn[id.RoomID], err).AsList()
}
