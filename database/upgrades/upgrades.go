// Package upgrades holds the bridge's SQL schema as embedded dbutil upgrade files.
package upgrades

import (
	"embed"

	"go.mau.fi/util/dbutil"
)

//go:embed *.sql
var rawUpgrades embed.FS

// Table is the bridge's upgrade table.
var Table = dbutil.BuildUpgradeTable().
	WithFS(rawUpgrades).
	Finish()
