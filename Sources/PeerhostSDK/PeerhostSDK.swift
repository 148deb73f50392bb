// PeerhostSDK
