// Command sanping is Sanping's server: the DICOM store with DICOMweb, accounts, consultations,
// the live rooms' signaling, SFU and TURN, the audit trail and the browser app, in one binary.
// Run "sanping -h" for its flags and subcommands; the code is in package server.
package main

import "github.com/sanping/sanping/server"

func main() { server.Main() }
