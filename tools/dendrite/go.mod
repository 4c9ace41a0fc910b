module dmbridge.local/tools/dendrite

go 1.24

require github.com/element-hq/dendrite v0.15.2 // indirect
