// PeerhostSandbox
