// PeerhostTesting
