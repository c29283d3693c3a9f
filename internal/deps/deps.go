// Package deps pins the live issue's modules while its packages are written; removed once they import them.
package deps

import (
	_ "github.com/gorilla/websocket"
	_ "github.com/pion/ice/v4"
	_ "github.com/pion/interceptor"
	_ "github.com/pion/interceptor/pkg/cc"
	_ "github.com/pion/interceptor/pkg/gcc"
	_ "github.com/pion/rtcp"
	_ "github.com/pion/rtp"
	_ "github.com/pion/sdp/v3"
	_ "github.com/pion/transport/v5/vnet"
	_ "github.com/pion/turn/v5"
	_ "github.com/pion/webrtc/v4/pkg/media/h264reader"
	_ "github.com/pion/webrtc/v4/pkg/media/ivfreader"
	_ "github.com/pion/webrtc/v4/pkg/media/ivfwriter"
	_ "github.com/pion/webrtc/v4/pkg/media/oggreader"
	_ "github.com/pion/webrtc/v4/pkg/media/oggwriter"
	_ "github.com/pion/webrtc/v4/pkg/media/samplebuilder"
)

import _ "github.com/chromedp/chromedp"
