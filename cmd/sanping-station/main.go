// Command sanping-station is Sanping's station program, run on a village clinic's imaging PC:
// it receives images from the modality by DICOM C-STORE, uploads studies and joins live
// consultations. Run "sanping-station" for its commands; the code is in package client.
package main

import "github.com/sanping/sanping/client"

func main() { client.Main() }
