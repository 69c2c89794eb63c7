module github.com/metalbed/metalbed

go 1.25.0

require (
	github.com/diskfs/go-diskfs v1.9.4
	github.com/gokrazy/kernel.amd64 v0.0.0-20260705070735-de680abf072b
)

require github.com/elliotwutingfeng/asciiset v0.0.0-20260129054604-cfde2086bc57 // indirect
