module github.com/metalbed/metalbed

go 1.24.0
