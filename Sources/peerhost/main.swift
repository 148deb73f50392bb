print("peerhost")
